"""Alerts: ``/clm/api/v1/alerts`` (filters, pages), ``/alerts/{id}`` (with its delivery attempts), and
``/alerts/{id}/ack`` and ``/alerts/{id}/resolve`` for operators.

The same functions as the Alerts screen (:mod:`clm_lib.reporting.alerts`, :mod:`clm_lib.alerts`). Acknowledging
stops an alert's delivery and takes it off the Overview; resolving frees its cause, so the next occurrence is a new
alert. Both need the right to trigger ``clm_alerts`` and are audited with the caller's name. Messages are pipeline
text: escape them where shown.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from clm_api.deps import READ, ActorDep, ConfigDep, PageDep, operate
from clm_lib.alerts import AlertNotFound, acknowledge, resolve
from clm_lib.alerts.config import Severity
from clm_lib.reporting.alerts import AlertKind, AlertsPage, AlertView, Status, alert_detail, alerts_page
from clm_lib.reporting.stores import reading

router = APIRouter(tags=["alerts"])

ACK = operate("clm_alerts")
"""Acknowledging or resolving changes what ``clm_alerts`` sends: the right to trigger it decides."""
MAX_ID = 2**63 - 1
AlertId = Annotated[int, Path(ge=1, le=MAX_ID, description="The alert's id.")]


class ResolveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(default="", max_length=2000)
    """Why it is over: kept in the audit log with the caller's name."""


@router.get("/alerts", dependencies=READ, response_model=AlertsPage)
def alerts(
    cfg: ConfigDep,
    page: PageDep,
    status: Annotated[Status, Query(description="open (not acknowledged), acknowledged, resolved or all.")] = "open",
    kind: Annotated[AlertKind | None, Query(description="Only this kind.")] = None,
    severity: Annotated[Severity | None, Query(description="At or above this severity.")] = None,
) -> AlertsPage:
    """Alerts, most recently seen first, with each channel's delivery state (ok, failing since when)."""
    return alerts_page(cfg, status=status, kind=kind, severity=severity, offset=page.offset, limit=page.limit)


def _one(cfg, alert_id: int) -> AlertView:
    with reading(cfg.database_url) as s:
        try:
            return alert_detail(s, alert_id)
        except AlertNotFound as exc:
            raise HTTPException(404, str(exc)) from None


@router.get("/alerts/{alert_id}", dependencies=READ, response_model=AlertView)
def alert(cfg: ConfigDep, alert_id: AlertId) -> AlertView:
    """One alert with every delivery attempt (channel, attempt, sent / failed / gave_up, error), newest first."""
    return _one(cfg, alert_id)


@router.post("/alerts/{alert_id}/ack", dependencies=ACK, response_model=AlertView)
def ack(cfg: ConfigDep, actor: ActorDep, alert_id: AlertId) -> AlertView:
    """Acknowledge: no further delivery, off the Overview; it stays open and counts recurrences. Audited
    ``alert.acknowledged``; acknowledging again keeps the first acknowledgement."""
    with reading(cfg.database_url) as s:
        try:
            acknowledge(s, alert_id, actor)
        except AlertNotFound as exc:
            raise HTTPException(404, str(exc)) from None
    return _one(cfg, alert_id)


@router.post("/alerts/{alert_id}/resolve", dependencies=ACK, response_model=AlertView)
def resolve_alert(cfg: ConfigDep, actor: ActorDep, alert_id: AlertId, body: ResolveIn | None = None) -> AlertView:
    """Resolve: the cause is freed, so its next occurrence is a new alert (delivered again). Audited
    ``alert.resolved``."""
    with reading(cfg.database_url) as s:
        try:
            resolve(s, alert_id, actor, reason=body.reason if body else "")
        except AlertNotFound as exc:
            raise HTTPException(404, str(exc)) from None
    return _one(cfg, alert_id)
