"""The Overview, Integrations and Getting started screens' numbers: ``/clm/api/v1/overview``, ``/health``,
``/alerts``, ``/integrations`` and ``/getting-started``.

The same functions as the screens: :func:`clm_lib.reporting.overview.build_overview` (and its
:func:`~clm_lib.reporting.overview.stage_health`), :func:`clm_lib.reporting.alerts.open_alerts`,
:func:`clm_lib.reporting.integrations.build_integrations` and
:func:`clm_lib.reporting.getting_started.build_getting_started`.
Addresses come without credentials; texts from the stores (errors, reasons) are data: escape them where shown.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict

from clm_api.deps import READ, ConfigDep, Page, PageDep
from clm_lib.reporting import build_overview
from clm_lib.reporting.alerts import MAX_ALERTS, AlertKind, open_alerts
from clm_lib.reporting.getting_started import build_getting_started
from clm_lib.reporting.integrations import build_integrations
from clm_lib.reporting.overview import stage_health
from clm_lib.reporting.stores import reading

log = logging.getLogger(__name__)

router = APIRouter(tags=["overview"], dependencies=READ)


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class StageHealthOut(_Out):
    stage: str
    screen: str
    state: str
    """ok, failing (the newest run failed) or never (has not run yet)."""
    last_success: datetime | None
    last_failure: datetime | None
    failures_since_success: int
    failing_since: datetime | None


class AlertOut(_Out):
    kind: str
    at: datetime | None
    title: str
    detail: str
    target: str
    screen: str
    """Path under ``/pluginsv2/clm`` of the screen that shows it."""


class AliasedVersionOut(_Out):
    alias: str
    version: str
    mlflow_run_id: str | None
    training_run_id: str | None
    registered_at: datetime | None
    average_accuracy: float | None
    backward_transfer: float | None


class RegistryOut(_Out):
    status: str
    message: str
    tracking_uri: str
    champion: AliasedVersionOut | None
    challenger: AliasedVersionOut | None


class GateOut(_Out):
    passed: bool
    reasons: list[str]
    champion_version: str | None
    decided_at: datetime | None


class CandidateOut(_Out):
    training_run_id: str
    status: str
    model_version: str | None
    started_at: datetime | None
    finished_at: datetime | None
    new_rows: int
    replay_rows: int
    average_accuracy: float | None
    backward_transfer: float | None
    gate: GateOut | None
    aliases: list[str]
    error: str | None


class MatrixOut(_Out):
    training_run_id: str
    model_version: str | None
    created_at: datetime | None
    tasks: list[str]
    rows: list[list[float | None]]
    learned_at: dict[str, int]
    average_accuracy: float
    backward_transfer: float | None
    forgetting: dict[str, float]


class CountOut(_Out):
    label: str
    value: int


class LastBatchOut(_Out):
    id: str
    source: str
    source_format: str
    status: str
    started_at: datetime | None
    finished_at: datetime | None
    rows_in: int
    rows_curated: int
    rows_quarantined: int
    rows_duplicate: int
    per_task: list[CountOut]
    per_reason: list[CountOut]
    reconciles: bool


class IngestionOut(_Out):
    last_batch: LastBatchOut | None
    committed_batches: int
    rows_curated: int
    rows_quarantined: int


class AuditLineOut(_Out):
    at: datetime | None
    actor: str
    action: str
    target: str
    from_value: str | None
    to_value: str | None
    reason: str


class TrendPointOut(_Out):
    model_version: str
    training_run_id: str
    created_at: datetime | None
    average_accuracy: float
    backward_transfer: float | None


class OverviewOut(_Out):
    """Everything the Overview screen shows (its charts are drawn from ``trend``)."""

    generated_at: datetime
    model_name: str
    landing_dir: str
    database_url: str
    database_problem: str | None
    registry: RegistryOut
    health: list[StageHealthOut]
    alerts: list[AlertOut]
    trend: list[TrendPointOut]
    candidates: list[CandidateOut]
    matrix: MatrixOut | None
    ingestion: IngestionOut
    audit: list[AuditLineOut]
    is_fresh_install: bool


class HealthOut(BaseModel):
    stages: list[StageHealthOut]


class IntegrationOut(_Out):
    name: str
    state: str
    """reachable, unreachable or not configured."""
    detail: str
    address: str
    configured_in: str
    latency_ms: float | None
    since: datetime | None


class IntegrationsOut(_Out):
    generated_at: datetime
    integrations: list[IntegrationOut]


class StepOut(_Out):
    number: int
    title: str
    what: str
    done: bool | None
    status: str
    last_at: datetime | None
    screen: str
    commands: list[str]


class GettingStartedOut(_Out):
    generated_at: datetime
    steps: list[StepOut]
    problems: list[str]
    demo: list[str]
    own_model_and_data: list[str]


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
        return HealthOut(stages=[StageHealthOut.model_validate(h) for h in stage_health(s)])


@router.get("/alerts")
def alerts(
    cfg: ConfigDep, page: PageDep, kind: Annotated[AlertKind | None, Query(description="Only this kind.")] = None
) -> Page[AlertOut]:
    """Open alerts, newest first: automatic rollbacks, guard breaches, gate refusals, ingestion batches given up,
    failed or interrupted training runs (at most the newest 500 of each kind)."""
    with reading(cfg.database_url) as s:
        found = open_alerts(s, kind=kind, limit=MAX_ALERTS)
    items = [AlertOut.model_validate(a) for a in found[page.offset : page.offset + page.limit]]
    return Page[AlertOut](items=items, total=len(found), offset=page.offset, limit=page.limit)


@router.get("/integrations")
def integrations(cfg: ConfigDep) -> IntegrationsOut:
    """MLflow, clm's database, the lake, Kafka, Kubernetes and GPU nodes: reachable or not, latency, since when,
    and which setting configures each (never a secret)."""
    return IntegrationsOut.model_validate(build_integrations(cfg, connection=connection_overrides()))


@router.get("/getting-started")
def getting_started(cfg: ConfigDep) -> GettingStartedOut:
    """The five steps of clm with how far this installation has got, and the commands to take the next one."""
    return GettingStartedOut.model_validate(build_getting_started(cfg))


def connection_overrides() -> dict[str, str]:
    """What the ``clm_default`` connection sets (to say where a store is configured); {} when it cannot be read
    (the config resolver has already refused a broken one)."""
    from clm_lib.airflow.settings import connection_overrides as read
    from clm_lib.errors import ClmError

    try:
        return read()
    except ClmError:
        log.warning("clm_default connection cannot be read", exc_info=True)
        return {}
