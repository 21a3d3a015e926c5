"""The review queue: corrections sent as feedback wait here until an operator accepts or rejects them.

A correction is text a serving client wrote, so it must not become training data on its own. When a slot
receives one it stores a ``serving_feedback`` row with status ``pending_review`` and, in the same transaction,
appends the correction to the ``quarantine`` table with reason ``pending_review`` (a blind Delta append, which
commits safely beside ``clm_ingest``'s), where the data screens show it. The row in clm's database is the queue
and says what became of the correction; the quarantine row stays as it arrived.

- :func:`pending` lists the queue; :func:`items` reads feedback rows by id;
- :func:`accept` marks corrections accepted and publishes them to the landing folder as one JSONL file, so they
  are curated through the normal ingestion path (GX suite, dedupe, content id, split, counts that reconcile);
- :func:`reject` marks them rejected, with the operator's reason.

Both take the whole list or nothing (a conditional UPDATE claims the rows, so two operators cannot both decide
one correction), and audit each decision. ``clm feedback review|accept|reject`` and the REST API call these.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from sqlalchemy import select, update

from clm_lib import audit
from clm_lib.config import ClmConfig
from clm_lib.data.landing_s3 import deliver, staging_dir
from clm_lib.db import session_scope
from clm_lib.db.models import ServingFeedback, utcnow
from clm_lib.errors import ClmError

PENDING = "pending_review"
ACCEPTED = "accepted"
REJECTED = "rejected"


@dataclass(frozen=True)
class ReviewItem:
    """One feedback row, as an operator reviews it."""

    id: int
    response_id: str
    status: str
    task: str | None
    prompt: str
    response: str
    """What the model answered."""
    correction: str | None
    """What the client says it should have answered."""
    comment: str | None
    rating: float
    owner: str
    slot: str
    model_version: str
    record_id: str | None
    created_at: datetime
    reviewed_at: datetime | None
    reviewed_by: str | None
    review_reason: str | None

    def as_dict(self) -> dict:
        out = asdict(self)
        for key in ("created_at", "reviewed_at"):
            out[key] = out[key].isoformat() if out[key] else None
        return out


def _item(row: ServingFeedback) -> ReviewItem:
    return ReviewItem(**{f: getattr(row, f) for f in ReviewItem.__dataclass_fields__})


def quarantine_correction(cfg: ClmConfig, row: ServingFeedback) -> int:
    """Append a correction to ``quarantine`` with reason ``pending_review``; sets ``row.record_id``; returns the
    table's new version."""
    import pyarrow as pa

    from clm_lib.data import lake
    from clm_lib.data.records import record_id

    row.record_id = record_id(row.task, row.prompt, row.correction)
    meta = {
        "source": "feedback", "feedback_id": row.id, "response_id": row.response_id, "owner": row.owner,
        "rating": row.rating, "model_version": row.model_version, "slot": row.slot, "corrected": True,
    }  # fmt: skip
    detail = (
        f"correction from {row.owner} on {row.response_id} (slot {row.slot}, version {row.model_version}); "
        f"waits for an operator: clm feedback accept|reject {row.id}"
    )
    table = pa.table({
        "id": [row.record_id], "task": [row.task], "prompt": [row.prompt], "response": [row.correction],
        "metadata": [json.dumps(meta, ensure_ascii=False, sort_keys=True)], "reason": [PENDING],
        "detail": [detail], "source": [f"feedback:{row.slot}"], "line": [row.id],
        "batch_id": [f"feedback-review-{row.id}"], "ingested_at": [datetime.now(UTC)],
    })  # fmt: skip
    return lake.append(cfg, "quarantine", table)


def pending(cfg: ClmConfig, *, limit: int = 100) -> list[ReviewItem]:
    """Corrections waiting for review, oldest first."""
    with session_scope(cfg.database_url) as s:
        stmt = select(ServingFeedback).where(ServingFeedback.status == PENDING).order_by(ServingFeedback.id)
        return [_item(r) for r in s.scalars(stmt.limit(limit))]


def items(cfg: ClmConfig, ids: list[int]) -> list[ReviewItem]:
    """Feedback rows by id, in id order (unknown ids are left out)."""
    with session_scope(cfg.database_url) as s:
        stmt = select(ServingFeedback).where(ServingFeedback.id.in_(ids)).order_by(ServingFeedback.id)
        return [_item(r) for r in s.scalars(stmt)]


def _claim(s, ids: list[int], status: str, actor: str, reason: str) -> list[ServingFeedback]:
    """Move every one of ``ids`` from pending to ``status``, or raise ClmError naming those that are not pending."""
    ids = sorted(set(ids))
    if not ids:
        raise ClmError("name at least one feedback id (see `clm feedback review`)")
    claimed = s.execute(
        update(ServingFeedback)
        .where(ServingFeedback.id.in_(ids), ServingFeedback.status == PENDING)
        .values(status=status, reviewed_at=utcnow(), reviewed_by=actor, review_reason=reason or None)
        .execution_options(synchronize_session=False)
    ).rowcount
    if claimed != len(ids):
        s.rollback()
        stmt = select(ServingFeedback.id, ServingFeedback.status).where(ServingFeedback.id.in_(ids))
        found = {i: st for i, st in s.execute(stmt)}
        why = [f"{i}: {found[i]}" if i in found else f"{i}: no such feedback" for i in ids if found.get(i) != PENDING]
        raise ClmError(f"nothing decided: not every id is a correction pending review ({'; '.join(why)})")
    return list(s.scalars(select(ServingFeedback).where(ServingFeedback.id.in_(ids)).order_by(ServingFeedback.id)))


def accept(cfg: ClmConfig, ids: list[int], *, actor: str, reason: str = "") -> tuple[list[ReviewItem], str]:
    """Accept corrections: they are published to the landing location as one JSONL file (where it is returned),
    which the next ingest curates. All of ``ids`` or none."""
    staging = staging_dir(cfg)
    staging.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    hidden = staging / f".feedback-review-{stamp}.jsonl.part"  # ingest skips hidden files until the rename
    target = f"feedback-review-{stamp}.jsonl"
    try:
        with session_scope(cfg.database_url) as s:
            rows = _claim(s, ids, ACCEPTED, actor, reason)
            with hidden.open("w", encoding="utf-8") as fh:
                for r in rows:
                    record = {
                        "task": r.task, "prompt": r.prompt, "response": r.correction, "source": "feedback",
                        "rating": r.rating, "response_id": r.response_id, "model_version": r.model_version,
                        "slot": r.slot, "corrected": True, "feedback_id": r.id, "owner": r.owner,
                        "reviewed_by": actor,
                    }  # fmt: skip
                    fh.write(json.dumps(record, ensure_ascii=False) + "\n")
            for r in rows:
                audit.record(s, action="feedback.accept", target=f"serving_feedback:{r.id}", actor=actor,
                             from_value=PENDING, to_value=ACCEPTED, reason=reason or f"correction from {r.owner}",
                             details={"record_id": r.record_id, "landing_file": target})  # fmt: skip
            accepted = [_item(r) for r in rows]
        where = deliver(cfg, hidden, target)
    finally:
        hidden.unlink(missing_ok=True)
    return accepted, where


def reject(cfg: ClmConfig, ids: list[int], *, actor: str, reason: str) -> list[ReviewItem]:
    """Reject corrections (they never reach training); ``reason`` is required. All of ``ids`` or none."""
    if not reason.strip():
        raise ClmError("say why the corrections are rejected (--reason)")
    with session_scope(cfg.database_url) as s:
        rows = _claim(s, ids, REJECTED, actor, reason)
        for r in rows:
            audit.record(s, action="feedback.reject", target=f"serving_feedback:{r.id}", actor=actor,
                         from_value=PENDING, to_value=REJECTED, reason=reason,
                         details={"record_id": r.record_id})  # fmt: skip
        return [_item(r) for r in rows]
