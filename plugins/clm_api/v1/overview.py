"""The Overview, Integrations and Getting started screens' numbers: ``/clm/api/v1/overview``, ``/health``,
``/integrations`` and ``/getting-started`` (alerts: :mod:`clm_api.v1.alerts`).

The same functions as the screens: :func:`clm_lib.reporting.overview.build_overview` (and its
:func:`~clm_lib.reporting.overview.stage_health`), :func:`clm_lib.reporting.alerts.open_alerts` (its alerts),
:func:`clm_lib.airflow.integrations.integrations_here` and
:func:`clm_lib.reporting.getting_started.build_getting_started`.
Addresses come without credentials; texts from the stores (errors, reasons) are data: escape them where shown.
"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict

from clm_api.deps import READ, ConfigDep
from clm_lib.airflow.integrations import integrations_here
from clm_lib.alerts.core import AlertView
from clm_lib.reporting import build_overview
from clm_lib.reporting.getting_started import GettingStarted, build_getting_started
from clm_lib.reporting.integrations import IntegrationsPage
from clm_lib.reporting.overview import (
    AuditLine,
    Candidate,
    Ingestion,
    LatestMatrix,
    RegistryState,
    StageHealth,
    TrendPoint,
    stage_health,
)
from clm_lib.reporting.stores import reading

router = APIRouter(tags=["overview"], dependencies=READ)


class OverviewOut(BaseModel):
    """Everything the Overview screen shows (:class:`~clm_lib.reporting.overview.Overview`), derived here because
    the screen's ``trend`` carries drawn charts (SVG coordinates): the API gives the points they are drawn from, and
    leaves out ``formats`` (the landing folder's accepted formats: config, not state)."""

    model_config = ConfigDict(from_attributes=True)

    generated_at: datetime
    model_name: str
    landing_dir: str
    database_url: str
    database_problem: str | None
    registry: RegistryState
    health: list[StageHealth]
    alerts: list[AlertView]
    """Open, unacknowledged alerts (``GET /v1/alerts`` for all of them)."""
    trend: list[TrendPoint]
    candidates: list[Candidate]
    matrix: LatestMatrix | None
    ingestion: Ingestion
    audit: list[AuditLine]
    is_fresh_install: bool


class HealthOut(BaseModel):
    stages: list[StageHealth]


@router.get("/overview")
def overview(cfg: ConfigDep) -> OverviewOut:
    """Champion and challenger, health per stage, open alerts, AA/BWT per version, the recent training runs, the
    latest forgetting matrix, the last ingestion batch and recent audit entries. A store that cannot be read is
    named in ``database_problem`` / ``registry.message``."""
    o = build_overview(cfg)
    fields = {k: getattr(o, k) for k in OverviewOut.model_fields if k != "trend"}
    return OverviewOut.model_validate({**fields, "trend": o.trend.points if o.trend else []})


@router.get("/health")
def health(cfg: ConfigDep) -> HealthOut:
    """Ingestion, drift checks, training and serving: last success, failures since, failing since when."""
    with reading(cfg.database_url) as s:
        return HealthOut(stages=stage_health(s))


@router.get("/integrations")
def integrations(cfg: ConfigDep) -> IntegrationsPage:
    """MLflow, clm's database, the lake, Kafka, Kubernetes and GPU nodes: reachable or not, latency, since when,
    and which setting configures each (never a secret)."""
    return integrations_here(cfg)


@router.get("/getting-started")
def getting_started(cfg: ConfigDep) -> GettingStarted:
    """The five steps of clm with how far this installation has got, and the commands to take the next one."""
    return build_getting_started(cfg)
