"""Deployments and their events in clm's database, each event mirrored in the audit log.

MLflow keeps no history of which version served when (mlflow#2169); this does. A deployment is one
promotion or one rollback; its events are its steps, written as they happen (each in its own transaction, so
the screens show a rollout in progress), and each also lands in the audit log as ``deploy.<step>``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, object_session

from clm_lib import audit
from clm_lib.config import ClmConfig
from clm_lib.db import session_scope
from clm_lib.db.models import Deployment, DeploymentEvent, utcnow
from clm_lib.deploy.plan import ACTIVE, Mark, Record, marks
from clm_lib.errors import DeployError

_MARKS = "clm.version_marks"
"""``session.info`` key: the marks computed for this session, dropped whenever a deployment is opened or ends."""


def open_deployment(
    session: Session,
    cfg: ClmConfig,
    *,
    kind: str,
    version: str,
    from_version: str | None,
    strategy: str,
    status: str,
    actor: str | None,
    reason: str = "",
    started_at: datetime | None = None,
) -> Deployment:
    session.info.pop(_MARKS, None)
    dep = Deployment(
        kind=kind,
        model_name=cfg.registry.model_name,
        version=version,
        from_version=from_version,
        strategy=strategy,
        status=status,
        actor=actor or audit.default_actor(),
        reason=reason,
        details={},
        started_at=started_at or utcnow(),
        config_revision=cfg.revision,
    )
    session.add(dep)
    session.flush()
    return dep


def event(
    session: Session,
    dep: Deployment,
    step: str,
    status: str,
    message: str,
    *,
    weights: dict[str, int] | None = None,
    metrics: dict[str, Any] | None = None,
    actor: str | None = None,
) -> DeploymentEvent:
    """Record one step of ``dep`` and its audit entry."""
    ev = DeploymentEvent(
        deployment_id=dep.id, step=step, status=status, message=message, weights=weights, metrics=metrics or {}
    )
    session.add(ev)
    audit.record(
        session,
        action=f"deploy.{step}",
        target=f"{dep.model_name}/{dep.version}",
        actor=actor or dep.actor,
        from_value=dep.from_version,
        to_value=dep.version,
        reason=message,
        details={"deployment_id": dep.id, "kind": dep.kind, "status": status, "weights": weights},
    )
    session.flush()
    return ev


def finish(session: Session, dep: Deployment, status: str, outcome: str) -> None:
    session.info.pop(_MARKS, None)
    dep.status = status
    dep.outcome = outcome
    dep.finished_at = utcnow()
    session.flush()


def load(session: Session, deployment_id: int) -> Deployment:
    dep = session.get(Deployment, deployment_id)
    if dep is None:
        raise DeployError(f"no deployment #{deployment_id} in clm's database")
    return dep


def step(cfg: ClmConfig, deployment_id: int, name: str, status: str, message: str, **kwargs: Any) -> None:
    """Record an event of a deployment in its own transaction (a step finished: show it now)."""
    with session_scope(cfg.database_url) as s:
        event(s, load(s, deployment_id), name, status, message, **kwargs)


def active_deployment(session: Session) -> Deployment | None:
    """The promotion under way, if any (at most one: starting one takes the deploy lock and checks)."""
    return session.scalars(
        select(Deployment)
        .where(Deployment.kind == "promotion", Deployment.status.in_(ACTIVE))
        .order_by(Deployment.id.desc())
    ).first()


def records(session: Session, model_name: str | None = None) -> list[Record]:
    """The whole deployment history (of ``model_name``), oldest first, as plain values for
    :func:`clm_lib.deploy.plan.plan_rollback`."""
    cols = (Deployment.id, Deployment.kind, Deployment.version, Deployment.from_version, Deployment.status,
            Deployment.started_at, Deployment.finished_at)  # fmt: skip
    stmt = select(*cols).order_by(Deployment.id)
    if model_name is not None:
        stmt = stmt.where(Deployment.model_name == model_name)
    return [Record(i, k, v, f, st, fin or start) for i, k, v, f, st, start, fin in session.execute(stmt)]


def version_marks(session: Session) -> dict[str, Mark]:
    """Every version rolled back or rejected (and not champion since), computed once per session."""
    if _MARKS not in session.info:
        session.info[_MARKS] = marks(records(session))
    return session.info[_MARKS]


def latest_promotion(session: Session, version: str) -> Deployment | None:
    """The newest promotion of ``version``: how far it got (status) and why it ended there (outcome)."""
    return session.scalars(
        select(Deployment)
        .where(Deployment.kind == "promotion", Deployment.version == version)
        .order_by(Deployment.id.desc())
    ).first()


def recent(session: Session, limit: int = 20) -> list[Deployment]:
    return list(session.scalars(select(Deployment).order_by(Deployment.id.desc()).limit(limit)))


def events_of(session: Session, deployment_id: int) -> list[DeploymentEvent]:
    return list(
        session.scalars(
            select(DeploymentEvent).where(DeploymentEvent.deployment_id == deployment_id).order_by(DeploymentEvent.id)
        )
    )


def as_dict(dep: Deployment, events: list[DeploymentEvent] | None = None) -> dict[str, Any]:
    """A JSON-ready view of a deployment (and its events), for the API and the CLI."""
    out = {
        "id": dep.id,
        "kind": dep.kind,
        "model_name": dep.model_name,
        "version": dep.version,
        "from_version": dep.from_version,
        "strategy": dep.strategy,
        "status": dep.status,
        "slot": dep.slot,
        "stable_slot": dep.stable_slot,
        "actor": dep.actor,
        "reason": dep.reason,
        "outcome": dep.outcome,
        "started_at": dep.started_at.isoformat() if dep.started_at else None,
        "finished_at": dep.finished_at.isoformat() if dep.finished_at else None,
        "config_revision": dep.config_revision,
    }
    session = object_session(dep)
    marked = version_marks(session) if session is not None else {}
    # A version pulled from traffic or refused is marked wherever a deployment names it (issue #10).
    out["marks"] = {v: marked[v].text for v in (dep.version, dep.from_version) if v in marked}
    if events is not None:
        out["events"] = [
            {
                "at": ev.at.isoformat() if ev.at else None,
                "step": ev.step,
                "status": ev.status,
                "message": ev.message,
                "weights": ev.weights,
                "metrics": ev.metrics,
            }
            for ev in events
        ]
    return out
