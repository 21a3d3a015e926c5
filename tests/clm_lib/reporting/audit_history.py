"""An audit log and a review queue in a real clm database, shared by the reporting, REST and screen tests."""

from __future__ import annotations

from datetime import UTC, datetime
from unittest import mock
from uuid import uuid4

from clm_lib import audit
from clm_lib.db import session_scope
from clm_lib.db.models import ServingFeedback

HOSTILE = '<script>alert("x")</script>'
ENTRIES = [
    # actor, action, target, from, to, reason
    ("airflow:ada", "alias.challenger", "clm-assistant@challenger", None, "1", "candidate"),
    ("airflow:ada", "alias.champion", "clm-assistant@champion", None, "1", "first champion"),
    ("system:clm", "deploy.switch", "clm-assistant/2", "1", "2", "canary at 10%"),
    ("airflow:otto", "alias.champion", "clm-assistant@champion", "1", "2", "promoted"),
    ("airflow:otto", "serving_key.create", "serving_key:1", None, "infer", "key for billing"),
    ("airflow:uma", "feedback.reject", "serving_feedback:7", "pending_review", "rejected", HOSTILE),
    ("airflow:otto", "alias.champion", "clm-assistant@champion", "2", "1", '=HYPERLINK("http://evil")'),
    ("system:clm", "ingest_batch", "ingestion_batch:b-1", None, "curated v3", "ingested tickets.jsonl"),
]
"""Entry i (1-based id) is written at 2026-01-0i 12:00 UTC."""


def at(day: int) -> datetime:
    return datetime(2026, 1, day, 12, 0, tzinfo=UTC)


def seed_audit(url: str) -> None:
    """:data:`ENTRIES`, one a day, through :func:`clm_lib.audit.record` (a valid chain)."""
    with session_scope(url) as s:
        for day, (actor, action, target, old, new, reason) in enumerate(ENTRIES, 1):
            with mock.patch("clm_lib.audit.utcnow", return_value=at(day)):
                audit.record(s, action=action, target=target, actor=actor, from_value=old, to_value=new, reason=reason,
                             details={"deployment_id": 4} if action.startswith("deploy.") else None)  # fmt: skip


def add_corrections(url: str, texts: list[str]) -> list[int]:
    """Corrections pending review, as a serving slot stores them (without the quarantine append)."""
    ids = []
    with session_scope(url) as s:
        for text in texts:
            n = len(ids) + 1
            row = ServingFeedback(response_id=f"cmpl-{uuid4().hex}", slot="blue", model_version="2", task="routers",
                                  rating=0.0, prompt=f"prompt {n} {HOSTILE}", response="the model's answer",
                                  correction=text, owner="billing-team", status="pending_review",
                                  created_at=datetime(2026, 1, 1, tzinfo=UTC))  # fmt: skip
            s.add(row)
            s.flush()
            ids.append(row.id)
    return ids
