"""A version's report, printable: its evaluation (per-task scores, the accuracy matrix R, AA/BWT, forgetting), the
gate's decision, the lineage its training run recorded, every deployment that moved it and the audit entries
about it. Served at ``/pluginsv2/clm/report/<version>`` and ``/clm/api/v1/reports/<version>``.

Assembled from what the other screens already compute (:func:`~clm_lib.reporting.overview.matrix_of`,
:func:`~clm_lib.reporting.overview.registry_state`, :func:`~clm_lib.reporting.deployments.of_version`); nothing
here decides anything.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from clm_lib.config import ClmConfig
from clm_lib.db.models import AuditEntry, Deployment, Evaluation, GateDecision, TrainingRun
from clm_lib.errors import ClmError
from clm_lib.evaluation.task_metrics import DEFAULT_METRIC
from clm_lib.reporting import deployments
from clm_lib.reporting.audit import AuditRow
from clm_lib.reporting.audit import row as audit_row
from clm_lib.reporting.deployments import DeploymentView
from clm_lib.reporting.overview import GateVerdict, LatestMatrix, matrix_of, registry_state
from clm_lib.reporting.stores import reading, utc

VERSION = re.compile(r"^[0-9]{1,32}$")
"""What an MLflow model version looks like; anything else names no version."""
MAX_AUDIT = 200


class UnknownVersion(ClmError, LookupError):
    """No training run, evaluation, gate decision or deployment names this version (the API answers 404)."""


@dataclass(frozen=True)
class Lineage:
    """What the training run that produced the version recorded: where it came from and what it read."""

    training_run_id: str
    status: str
    parent_model_version: str | None
    base_model: str
    config_hash: str
    curated_version: int | None
    previous_curated_version: int | None
    replay_version: int | None
    new_rows: int
    replay_rows: int
    tasks: list[str]
    strategies: dict[str, Any]
    airflow_dag_id: str | None
    airflow_run_id: str | None
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None


@dataclass(frozen=True)
class TaskMetrics:
    primary: str
    """The metric the task's score is (``evaluation.metrics`` in the config): what the gate and R use."""
    values: dict[str, float]
    """Every task metric computed, 0-100 (exact match alone on an evaluation from before metrics could be chosen)."""


@dataclass(frozen=True)
class EvaluationReport:
    created_at: datetime | None
    scores: dict[str, float]
    """Task -> its primary metric (0-100) of this version on the task's held-out set."""
    matrix: LatestMatrix | None
    metrics: dict[str, TaskMetrics] = field(default_factory=dict)
    """Task -> every metric computed for it and which one ``scores`` holds."""


@dataclass(frozen=True)
class VersionReport:
    generated_at: datetime
    model_name: str
    version: str
    aliases: list[str]
    """MLflow aliases on this version now (empty when MLflow cannot be read: see ``registry_message``)."""
    registry_status: str
    registry_message: str
    lineage: Lineage | None
    evaluation: EvaluationReport | None
    gate: GateVerdict | None
    deployments: list[DeploymentView]
    audit: list[AuditRow]
    """Entries about this version (registration, alias moves, deployment steps), newest first."""


def build_report(cfg: ClmConfig, version: str) -> VersionReport:
    """The report of ``version``; :class:`UnknownVersion` when clm knows nothing about it, StoreDown when its
    database cannot be read."""
    version = str(version)
    if not VERSION.match(version):
        raise UnknownVersion(f"no model version {version[:40]!r}: versions are numbers")
    with reading(cfg.database_url) as s:
        run = s.scalars(
            select(TrainingRun).where(TrainingRun.model_version == version).order_by(TrainingRun.started_at.desc())
        ).first()
        ev = s.scalars(
            select(Evaluation).where(Evaluation.model_version == version).order_by(Evaluation.id.desc())
        ).first()
        gate = s.scalars(
            select(GateDecision)
            .where(GateDecision.model_name == cfg.registry.model_name, GateDecision.model_version == version)
            .order_by(GateDecision.id.desc())
        ).first()
        deps = deployments.of_version(s, version)
        if run is None and ev is None and gate is None and not deps and not _deployed(s, version):
            raise UnknownVersion(f"no model version {version} in clm's database (no training run, evaluation, "
                                 "gate decision or deployment names it)")  # fmt: skip
        audit = [audit_row(e) for e in _audit_of(s, cfg.registry.model_name, version)]
        lineage = run_lineage(run) if run else None
        evaluation = _evaluation(ev) if ev else None
        verdict = GateVerdict.of(gate)
    registry = registry_state(cfg)
    return VersionReport(
        generated_at=datetime.now(UTC),
        model_name=cfg.registry.model_name,
        version=version,
        aliases=registry.aliases_by_version.get(version, []),
        registry_status=registry.status,
        registry_message=registry.message,
        lineage=lineage,
        evaluation=evaluation,
        gate=verdict,
        deployments=deps,
        audit=audit,
    )


def _deployed(s: Session, version: str) -> bool:
    return bool(s.scalar(select(func.count(Deployment.id)).where(Deployment.version == version)))


def _audit_of(s: Session, model_name: str, version: str) -> list[AuditEntry]:
    about = or_(
        AuditEntry.target == f"{model_name}/{version}",
        (AuditEntry.action.startswith("alias.")) & (AuditEntry.target.startswith(f"{model_name}@"))
        & ((AuditEntry.to_value == version) | (AuditEntry.from_value == version)),
    )  # fmt: skip
    return list(s.scalars(select(AuditEntry).where(about).order_by(AuditEntry.id.desc()).limit(MAX_AUDIT)))


def run_lineage(run: TrainingRun) -> Lineage:
    """What ``run`` recorded about where its model came from (the registry screen shows the same)."""
    return Lineage(
        training_run_id=run.id,
        status=run.status,
        parent_model_version=run.parent_model_version,
        base_model=run.base_model,
        config_hash=run.config_hash,
        curated_version=run.curated_version,
        previous_curated_version=run.previous_curated_version,
        replay_version=run.replay_version,
        new_rows=run.new_rows or 0,
        replay_rows=run.replay_rows or 0,
        tasks=[str(t) for t in run.tasks or []],
        strategies=run.strategies if isinstance(run.strategies, dict) else {},
        airflow_dag_id=run.airflow_dag_id,
        airflow_run_id=run.airflow_run_id,
        started_at=utc(run.started_at),
        finished_at=utc(run.finished_at),
        error=run.error,
    )


def scores_of(ev: Evaluation) -> dict[str, float]:
    """Task -> accuracy of an evaluation, numbers only (the column is JSON written by every clm version)."""
    return {
        str(t): float(v) for t, v in (ev.scores or {}).items() if isinstance(v, int | float) and not isinstance(v, bool)
    }


def metrics_of(ev: Evaluation) -> dict[str, TaskMetrics]:
    """Task -> :class:`TaskMetrics` of an evaluation; one written before metrics could be chosen scored exact match."""
    scores, stored = scores_of(ev), ev.metrics if isinstance(ev.metrics, dict) else {}
    out = {}
    for task, score in scores.items():
        entry = stored.get(task) if isinstance(stored.get(task), dict) else {}
        values = entry.get("values") if isinstance(entry.get("values"), dict) else {}
        primary = str(entry.get("primary") or DEFAULT_METRIC)
        numbers = {
            str(k): float(v) for k, v in values.items() if isinstance(v, int | float) and not isinstance(v, bool)
        }
        out[task] = TaskMetrics(primary=primary, values=numbers or {primary: score})
    return out


def _evaluation(ev: Evaluation) -> EvaluationReport:
    return EvaluationReport(
        created_at=utc(ev.created_at), scores=scores_of(ev), matrix=matrix_of(ev), metrics=metrics_of(ev)
    )
