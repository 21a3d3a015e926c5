"""Alerts as rows: raised by the pipeline, one open alert per cause, acknowledged and resolved by people.

A *cause* names what is wrong, not when: ``gate_refused:model/7``, ``dag_failed:clm_ingest``,
``store_unreachable:mlflow``. Raising an alert whose cause already has an open one (acknowledged or not) bumps that
one's ``count`` and ``last_seen`` instead of adding a row, so a DAG that fails every five minutes is one alert that
says "x 12", and it is delivered once. Resolving frees the cause: the next occurrence is a new alert, delivered
again. The unique ``open_cause`` column makes this hold between concurrent writers too.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from clm_lib import audit
from clm_lib.alerts.config import SEVERITIES
from clm_lib.db.models import Alert, utcnow
from clm_lib.errors import ClmError
from clm_lib.redaction import redact_text

log = logging.getLogger(__name__)

KINDS = ("drift_retrain", "gate_refused", "rollback", "guard_breach", "dag_failed", "store_unreachable")
"""What raises alerts today: drift that requests a retraining, a gate refusal, an automatic rollback (canary or
guard), a guard breach not rolled back, a failed clm DAG run, a store the health check cannot reach."""
MAX_MESSAGE = 4000
MAX_CAUSE = 250
MAX_LINKS = 10


class AlertNotFound(ClmError):
    """No alert has this id."""


@dataclass(frozen=True)
class Link:
    label: str
    href: str
    """A path from the Airflow web root: ``/pluginsv2/clm/...`` for a clm screen, ``/dags/...`` for Airflow's."""


@dataclass
class AlertView:
    """One alert as the screens, the REST API and the channels see it."""

    id: int
    kind: str
    """One of :data:`KINDS`."""
    cause: str
    """What it is about; one open alert per cause."""
    severity: str
    """info, warning or critical."""
    message: str
    """Text from the pipeline (errors, reasons): untrusted, escape it where shown."""
    links: list[dict[str, str]]
    """``{"label", "href"}``: the screens that show it."""
    first_seen: datetime | None
    last_seen: datetime | None
    count: int
    """Occurrences while open."""
    state: str
    """open, acknowledged or resolved."""
    acknowledged_by: str | None = None
    acknowledged_at: datetime | None = None
    resolved_by: str | None = None
    resolved_at: datetime | None = None
    deliveries: list[dict[str, Any]] = field(default_factory=list)
    """Every delivery attempt (channel, attempt, status, error, at), newest first; filled by :func:`get`."""

    def payload(self) -> dict[str, Any]:
        """What a channel is sent (JSON-ready)."""
        return {"source": "clm", "id": self.id, "kind": self.kind, "cause": self.cause, "severity": self.severity,
                "message": self.message, "links": self.links, "count": self.count,
                "first_seen": _iso(self.first_seen), "last_seen": _iso(self.last_seen)}  # fmt: skip


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at is not None else None


def _utc(at: datetime | None) -> datetime | None:
    from datetime import UTC

    return at.replace(tzinfo=UTC) if at is not None and at.tzinfo is None else at  # SQLite hands back naive UTC


def view(a: Alert) -> AlertView:
    state = "resolved" if a.resolved_at else "acknowledged" if a.acknowledged_at else "open"
    return AlertView(a.id, a.kind, a.cause, a.severity, a.message, list(a.links or []), _utc(a.first_seen),
                     _utc(a.last_seen), a.count, state, a.acknowledged_by, _utc(a.acknowledged_at), a.resolved_by,
                     _utc(a.resolved_at))  # fmt: skip


def _links(links: list[Link] | list[dict[str, str]] | None) -> list[dict[str, str]]:
    out = []
    for link in (links or [])[:MAX_LINKS]:
        label, href = (link.label, link.href) if isinstance(link, Link) else (link["label"], link["href"])
        out.append({"label": str(label)[:200], "href": str(href)[:2000]})
    return out


def raise_alert(
    session: Session,
    *,
    kind: str,
    cause: str,
    severity: str,
    message: str,
    links: list[Link] | list[dict[str, str]] | None = None,
    now: datetime | None = None,
) -> Alert:
    """The open alert of ``cause``, created or (already open) bumped: ``count`` + 1, ``last_seen``, the newest
    message and links, the higher severity."""
    if kind not in KINDS:
        raise ValueError(f"kind: {kind!r} is not one of {', '.join(KINDS)}")
    if severity not in SEVERITIES:
        raise ValueError(f"severity: {severity!r} is not one of {', '.join(SEVERITIES)}")
    now, cause = now or utcnow(), cause[:MAX_CAUSE]
    message = redact_text(message)[:MAX_MESSAGE]
    found = session.scalar(select(Alert).where(Alert.open_cause == cause))
    if found is None:
        try:
            with session.begin_nested():  # a concurrent writer may open the same cause first: then bump theirs
                found = Alert(kind=kind, cause=cause, open_cause=cause, severity=severity, message=message,
                              links=_links(links), first_seen=now, last_seen=now, count=1)  # fmt: skip
                session.add(found)
            return found
        except IntegrityError:
            found = session.scalar(select(Alert).where(Alert.open_cause == cause))
            if found is None:
                raise
    bump: dict[str, Any] = {"count": Alert.count + 1, "last_seen": now, "message": message}
    if links:  # the newest occurrence's (its run, its report)
        bump["links"] = _links(links)
    if SEVERITIES.index(severity) > SEVERITIES.index(found.severity):
        bump["severity"] = severity
    # count + 1 in SQL: concurrent raisers of one cause each add theirs (a read-modify-write would lose some)
    session.execute(update(Alert).where(Alert.id == found.id).values(**bump))
    session.refresh(found)
    return found


def record_alert(database_url: str, **alert: Any) -> int | None:
    """:func:`raise_alert` in a transaction of its own, for the pipeline: never raises (an alert that cannot be
    written is logged; the step that raised it goes on). The alert's id, or None."""
    from clm_lib.db import session_scope

    try:
        with session_scope(database_url) as s:
            a = raise_alert(s, **alert)
            s.flush()
            return a.id
    except Exception:
        log.exception("could not record alert %s", alert.get("cause"))
        return None


def _load(session: Session, alert_id: int) -> Alert:
    a = session.get(Alert, alert_id)
    if a is None:
        raise AlertNotFound(f"alert {alert_id} does not exist")
    return a


def acknowledge(session: Session, alert_id: int, actor: str, *, now: datetime | None = None) -> Alert:
    """Someone has seen it: no further delivery; it stays open (a recurrence bumps it). Audited
    ``alert.acknowledged``; acknowledging twice keeps the first acknowledgement."""
    a = _load(session, alert_id)
    if a.acknowledged_at is None:
        a.acknowledged_by, a.acknowledged_at = actor[:250], now or utcnow()
        details = {"kind": a.kind, "severity": a.severity, "count": a.count}
        audit.record(session, action="alert.acknowledged", target=f"alert:{a.id}", actor=actor, to_value=a.cause,
                     reason=a.message[:500], details=details)  # fmt: skip
    return a


def resolve(session: Session, alert_id: int, actor: str, *, reason: str = "", now: datetime | None = None) -> Alert:
    """It is over: the cause is freed, so its next occurrence is a new alert. Audited ``alert.resolved``."""
    a = _load(session, alert_id)
    if a.resolved_at is None:
        a.resolved_by, a.resolved_at, a.open_cause = actor[:250], now or utcnow(), None
        audit.record(session, action="alert.resolved", target=f"alert:{a.id}", actor=actor, to_value=a.cause,
                     reason=reason[:500], details={"kind": a.kind, "count": a.count})  # fmt: skip
    return a


def resolve_cause(session: Session, cause: str, actor: str, *, reason: str = "") -> Alert | None:
    """Resolve the open alert of ``cause`` if there is one (a store reachable again)."""
    a = session.scalar(select(Alert).where(Alert.open_cause == cause[:MAX_CAUSE]))
    return resolve(session, a.id, actor, reason=reason) if a is not None else None
