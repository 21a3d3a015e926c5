"""The Alerts screen and the Overview's open alerts: alerts from the ``alerts`` table (:mod:`clm_lib.alerts`),
filtered and paged, each with its delivery attempts, and how each channel's deliveries are going.

:func:`open_alerts` is what the Overview shows (open and not yet acknowledged, most recently seen first);
:func:`alerts_page` is the Alerts screen and ``GET /clm/api/v1/alerts``; :func:`alert_detail` is one alert with its
delivery attempts (``GET /clm/api/v1/alerts/{id}``). Messages are pipeline text: escape them where shown.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from clm_lib.alerts.config import SEVERITIES
from clm_lib.alerts.core import KINDS, AlertNotFound, AlertView, view
from clm_lib.alerts.delivery import ChannelState, channel_states
from clm_lib.config import ClmConfig
from clm_lib.db.models import Alert as AlertRow
from clm_lib.db.models import AlertDelivery
from clm_lib.reporting.stores import reading

Alert = AlertView
"""One alert as shown (the Overview's type)."""
AlertKind = Literal["drift_retrain", "gate_refused", "rollback", "guard_breach", "dag_failed", "store_unreachable"]
ALERT_KINDS: tuple[str, ...] = KINDS
Status = Literal["open", "acknowledged", "resolved", "all"]
STATUSES: tuple[str, ...] = Status.__args__  # type: ignore[attr-defined]
MAX_ALERTS = 500
MAX_DELIVERIES = 100
"""Delivery attempts shown for one alert, newest first."""
MAX_LISTED_DELIVERIES = 10
"""Delivery attempts shown per alert in a list."""
__all__ = ["ALERT_KINDS", "MAX_ALERTS", "Alert", "AlertKind", "AlertNotFound", "AlertsPage", "alert_detail",
           "alerts_page", "open_alerts"]  # fmt: skip


@dataclass
class AlertsPage:
    """One page of alerts with the filters that chose them, and each channel's delivery state."""

    generated_at: datetime
    status: str
    """open (not acknowledged, not resolved), acknowledged (not resolved), resolved, or all."""
    kind: str | None
    severity: str | None
    """At or above this severity (None: all)."""
    items: list[AlertView]
    total: int
    offset: int
    limit: int
    channels: list[ChannelState] = field(default_factory=list)
    """email, webhook, apprise: ok, failing since when, never tried, or disabled."""


def _query(status: str, kind: str | None, severity: str | None):
    q = select(AlertRow)
    if status == "open":
        q = q.where(AlertRow.resolved_at.is_(None), AlertRow.acknowledged_at.is_(None))
    elif status == "acknowledged":
        q = q.where(AlertRow.resolved_at.is_(None), AlertRow.acknowledged_at.is_not(None))
    elif status == "resolved":
        q = q.where(AlertRow.resolved_at.is_not(None))
    if kind:
        q = q.where(AlertRow.kind == kind)
    if severity:
        q = q.where(AlertRow.severity.in_(SEVERITIES[SEVERITIES.index(severity) :]))
    return q


def list_alerts(
    session: Session, *, status: str = "open", kind: str | None = None, severity: str | None = None,
    offset: int = 0, limit: int = 50,
) -> tuple[list[AlertView], int]:  # fmt: skip
    """Alerts matching the filters, most recently seen first, and how many match in all."""
    q = _query(status, kind, severity)
    total = session.scalar(select(func.count()).select_from(q.subquery())) or 0
    rows = session.scalars(q.order_by(AlertRow.last_seen.desc(), AlertRow.id.desc()).offset(offset).limit(limit))
    return [view(a) for a in rows], total


def open_alerts(session: Session, *, kind: str | None = None, limit: int = MAX_ALERTS) -> list[AlertView]:
    """Open, unacknowledged alerts of ``kind`` (all kinds when None), most recently seen first, at most ``limit``."""
    return list_alerts(session, kind=kind, limit=max(0, min(limit, MAX_ALERTS)))[0]


def alert_detail(session: Session, alert_id: int) -> AlertView:
    """One alert with its delivery attempts, newest first; :class:`AlertNotFound` naming the id."""
    row = session.get(AlertRow, alert_id)
    if row is None:
        raise AlertNotFound(f"alert {alert_id} does not exist")
    out = view(row)
    _attach_deliveries(session, [out], per_alert=MAX_DELIVERIES)
    return out


def _attach_deliveries(session: Session, alerts: list[AlertView], *, per_alert: int) -> None:
    """Each alert's newest delivery attempts, in one query for the lot."""
    if not alerts:
        return
    by_id = {a.id: a for a in alerts}
    # Attempts per alert are bounded (alerts.max_attempts per channel), so the lot is read without a limit.
    rows = session.scalars(select(AlertDelivery).where(AlertDelivery.alert_id.in_(by_id))
                           .order_by(AlertDelivery.id.desc()))  # fmt: skip
    for d in rows:
        tries = by_id[d.alert_id].deliveries
        if len(tries) < per_alert:
            at = d.at.replace(tzinfo=UTC) if d.at.tzinfo is None else d.at
            tries.append({"channel": d.channel, "attempt": d.attempt, "status": d.status, "error": d.error, "at": at})


def alerts_page(
    cfg: ClmConfig, *, status: str = "open", kind: str | None = None, severity: str | None = None,
    offset: int = 0, limit: int = 50,
) -> AlertsPage:  # fmt: skip
    """The Alerts screen; :class:`~clm_lib.reporting.stores.StoreDown` (which store, since when) when clm's
    database cannot be read."""
    page = AlertsPage(datetime.now(UTC), status, kind, severity, [], 0, offset, limit)
    with reading(cfg.database_url) as s:
        page.items, page.total = list_alerts(s, status=status, kind=kind, severity=severity, offset=offset,
                                             limit=limit)  # fmt: skip
        _attach_deliveries(s, page.items, per_alert=MAX_LISTED_DELIVERIES)
        page.channels = channel_states(s, cfg.alerts)
    return page
