"""Open alerts: what went wrong and may need a person, most recent first, each with the screen that shows it.

clm has no alerts table yet: :func:`open_alerts` derives them from what exists (automatic rollbacks, guard
breaches in the audit log, gate refusals, ingestion batches given up, failed or interrupted training runs). It is
the one function the Overview screen and ``GET /clm/api/v1/alerts`` call, so a later alerts table replaces it
alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from clm_lib.db.models import AuditEntry, Deployment, GateDecision, IngestionBatch, TrainingRun
from clm_lib.deploy.guard import ALERT
from clm_lib.reporting.stores import utc
from clm_lib.training.stale import INTERRUPTED

AlertKind = Literal["rollback", "guard_breach", "gate_refused", "ingestion_gave_up", "training_failed"]
ALERT_KINDS: tuple[str, ...] = AlertKind.__args__  # type: ignore[attr-defined]
MAX_ALERTS = 500
"""Per kind, the newest ones considered: an installation with thousands of failures shows the recent ones."""


@dataclass(frozen=True)
class Alert:
    kind: str
    """One of :data:`ALERT_KINDS`."""
    at: datetime | None
    title: str
    detail: str
    """Text from the stores (an error, a reason): untrusted, escape it where shown."""
    target: str
    """What it is about: ``deployment:12``, ``model:3``, ``ingestion_batch:b-1``, ``training_run:tr-4``."""
    screen: str
    """Path under ``/pluginsv2/clm`` of the screen that shows it."""


def open_alerts(session: Session, *, kind: str | None = None, limit: int = MAX_ALERTS) -> list[Alert]:
    """Every alert of ``kind`` (all kinds when None), newest first, at most ``limit``."""
    limit = max(0, min(limit, MAX_ALERTS))
    found: list[Alert] = []
    for name, read in _READERS.items():
        if kind in (None, name):
            found.extend(read(session, limit))
    found.sort(key=lambda a: (a.at is not None, a.at or datetime.min), reverse=True)
    return found[:limit]


def _rollbacks(session: Session, limit: int) -> list[Alert]:
    rows = session.scalars(
        select(Deployment).where(Deployment.status == "rolled_back").order_by(Deployment.id.desc()).limit(limit)
    )
    return [
        Alert("rollback", utc(d.finished_at or d.started_at), f"v{d.version} rolled back automatically",
              d.outcome or "", f"deployment:{d.id}", f"/serving?rolled_back={d.id}")
        for d in rows
    ]  # fmt: skip


def _guard_breaches(session: Session, limit: int) -> list[Alert]:
    rows = session.scalars(
        select(AuditEntry).where(AuditEntry.action == ALERT).order_by(AuditEntry.id.desc()).limit(limit)
    )
    out = []
    for e in rows:
        details = e.details or {}
        what = str(details.get("kind") or "alert").replace("_", " ")
        out.append(Alert("guard_breach", utc(e.at), f"{what} on {e.target}", e.reason or "", f"audit:{e.id}",
                         "/serving"))  # fmt: skip
    return out


def _gate_refusals(session: Session, limit: int) -> list[Alert]:
    rows = session.scalars(
        select(GateDecision).where(GateDecision.passed.is_(False)).order_by(GateDecision.id.desc()).limit(limit)
    )
    return [
        Alert("gate_refused", utc(g.decided_at), f"gate refused v{g.model_version}",
              "; ".join(str(r) for r in g.reasons or []), f"model:{g.model_version}", f"/report/{g.model_version}")
        for g in rows
    ]  # fmt: skip


def _ingestion_gave_up(session: Session, limit: int) -> list[Alert]:
    rows = session.scalars(
        select(IngestionBatch)
        .where(IngestionBatch.status == "gave_up")
        .order_by(IngestionBatch.started_at.desc())
        .limit(limit)
    )
    return [
        Alert("ingestion_gave_up", utc(b.finished_at or b.started_at), f"gave up ingesting {b.source}",
              b.error or "", f"ingestion_batch:{b.id}", "/ingestion?status=gave_up")
        for b in rows
    ]  # fmt: skip


def _training_failed(session: Session, limit: int) -> list[Alert]:
    rows = session.scalars(
        select(TrainingRun)
        .where(TrainingRun.status.in_(("failed", INTERRUPTED)))
        .order_by(TrainingRun.started_at.desc())
        .limit(limit)
    )
    return [
        Alert("training_failed", utc(r.finished_at or r.started_at), f"training run {r.id} {r.status}",
              r.error or "", f"training_run:{r.id}", "/")
        for r in rows
    ]  # fmt: skip


_READERS = {
    "rollback": _rollbacks,
    "guard_breach": _guard_breaches,
    "gate_refused": _gate_refusals,
    "ingestion_gave_up": _ingestion_gave_up,
    "training_failed": _training_failed,
}
