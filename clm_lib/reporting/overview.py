"""The overview screen: which model serves, what each candidate did, what the last data looked like.

Read-only and tolerant. A fresh install (no database file, no registry, no data) and an unreachable
MLflow are states the page shows, never exceptions it raises. Nothing is created by reading: an absent
SQLite file (clm's or MLflow's) stays absent, because a page view must not initialise stores.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, computed_field
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from clm_lib import audit
from clm_lib.config import ClmConfig
from clm_lib.db import session_scope
from clm_lib.db.models import Deployment, DriftReport, Evaluation, GateDecision, IngestionBatch, TrainingRun
from clm_lib.evaluation.matrix import AccuracyMatrix
from clm_lib.registry.aliases import CHALLENGER, CHAMPION
from clm_lib.reporting import charts
from clm_lib.reporting.alerts import Alert, open_alerts
from clm_lib.reporting.integrations import tcp
from clm_lib.reporting.schema import DOCUMENTED
from clm_lib.reporting.stores import first_line as _first_line
from clm_lib.reporting.stores import missing_sqlite as _missing_sqlite
from clm_lib.reporting.stores import redact_url
from clm_lib.reporting.stores import utc as _utc

log = logging.getLogger(__name__)

# A dead or hung MLflow server would otherwise hold the page for minutes: MLflow retries 7 times with
# exponential backoff and waits up to 120 s per request (mlflow.environment_variables, 3.17).
_MLFLOW_HTTP_BOUNDS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}


@dataclass(frozen=True)
class AliasedVersion:
    """The model version an alias points at, with what clm knows about it."""

    __pydantic_config__ = DOCUMENTED

    alias: str
    version: str
    mlflow_run_id: str | None
    training_run_id: str | None
    registered_at: datetime | None
    average_accuracy: float | None = None
    backward_transfer: float | None = None


@dataclass(frozen=True)
class RegisteredVersion:
    """One model version as MLflow holds it."""

    version: str
    registered_at: datetime | None
    mlflow_run_id: str | None
    tags: dict[str, str]
    """Its ``clm.*`` tags: the lineage :func:`clm_lib.registry.mlflow_registry.lineage_tags` wrote."""


@dataclass(frozen=True)
class RegistryState:
    """MLflow as the page sees it. ``status``: ok, empty (nothing registered yet) or unreachable."""

    __pydantic_config__ = DOCUMENTED

    status: Literal["ok", "empty", "unreachable"]
    message: str
    tracking_uri: str
    """Credentials removed: this string is shown to users."""
    champion: AliasedVersion | None = None
    challenger: AliasedVersion | None = None
    # The two below are lookups the screens build from MLflow: left out of REST answers (GET /v1/registry lists
    # the versions and their aliases, paged).
    aliases_by_version: Annotated[dict[str, list[str]], Field(exclude=True)] = field(default_factory=dict)
    versions: Annotated[dict[str, RegisteredVersion] | None, Field(exclude=True)] = None
    """Every version of the model, when asked for (``registry_state(cfg, versions=True)``) and readable."""


@dataclass(frozen=True)
class GateVerdict:
    """What the promotion gate decided about a candidate."""

    __pydantic_config__ = DOCUMENTED

    passed: bool
    reasons: list[str]
    champion_version: str | None
    decided_at: datetime | None

    @classmethod
    def of(cls, gate: GateDecision | None) -> GateVerdict | None:
        """A stored gate decision as the screens show it (None stays None)."""
        if gate is None:
            return None
        return cls(gate.passed, [str(r) for r in gate.reasons or []], gate.champion_version, _utc(gate.decided_at))


@dataclass(frozen=True)
class Candidate:
    """One training run and what became of its output."""

    __pydantic_config__ = DOCUMENTED

    training_run_id: str
    status: str
    model_version: str | None
    started_at: datetime | None
    finished_at: datetime | None
    new_rows: int
    replay_rows: int
    average_accuracy: float | None
    backward_transfer: float | None
    gate: GateVerdict | None
    aliases: list[str]
    # Left out of REST answers: GET /v1/training/runs/{id} links the run to Airflow (``airflow_path``).
    airflow_dag_id: Annotated[str | None, Field(exclude=True)]
    airflow_run_id: Annotated[str | None, Field(exclude=True)]
    error: str | None


@dataclass(frozen=True)
class LatestMatrix:
    """The accuracy matrix R of the newest evaluation: row i = after update i, column j = task j."""

    __pydantic_config__ = DOCUMENTED

    training_run_id: str
    model_version: str | None
    created_at: datetime | None
    tasks: list[str]
    rows: list[list[float | None]]
    learned_at: dict[str, int]
    """Task -> row in which it was first learned (the diagonal a reader compares against)."""
    average_accuracy: float
    backward_transfer: float | None
    forgetting: dict[str, float]
    """Per old task: best accuracy it ever had minus its accuracy now."""


@dataclass(frozen=True)
class Count:
    """How many of one kind."""

    __pydantic_config__ = DOCUMENTED

    label: str
    value: int


@dataclass(frozen=True)
class Batch:
    """One ingested landing file. Its counts reconcile: in = curated + quarantined + duplicates."""

    __pydantic_config__ = DOCUMENTED

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
    per_task: list[Count]
    per_reason: list[Count]
    # Left out of REST answers, which show the last batch in brief: GET /v1/ingestion/batches/{id} has them.
    notes: Annotated[list[str], Field(exclude=True)]
    """What the reader noticed that is not a record problem (blank lines skipped, an empty file)."""
    error: Annotated[str | None, Field(exclude=True)]

    @computed_field
    @property
    def reconciles(self) -> bool:
        """Every row in went to exactly one place (curated, quarantined or duplicate)."""
        return self.rows_in == self.rows_curated + self.rows_quarantined + self.rows_duplicate


@dataclass(frozen=True)
class Ingestion:
    """The last ingestion batch, and what all committed batches added up to."""

    __pydantic_config__ = DOCUMENTED

    last_batch: Batch | None
    committed_batches: int
    rows_curated: int
    rows_quarantined: int


@dataclass(frozen=True)
class AuditLine:
    """One recent audit entry, in brief."""

    __pydantic_config__ = DOCUMENTED

    at: datetime | None
    actor: str
    action: str
    target: str
    from_value: str | None
    to_value: str | None
    reason: str


@dataclass(frozen=True)
class StageHealth:
    """One stage of the loop as its own table records it."""

    __pydantic_config__ = DOCUMENTED

    stage: str
    """ingestion, drift, training or serving."""
    screen: str
    """Path under ``/pluginsv2/clm`` of the stage's screen."""
    state: Literal["ok", "failing", "never"]
    """``failing``: the newest run of the stage failed; ``never``: the stage has not run yet."""
    last_success: datetime | None
    last_failure: datetime | None
    failures_since_success: int
    failing_since: datetime | None
    """The first failure after the last success (None when the newest run succeeded)."""


@dataclass(frozen=True)
class TrendPoint:
    """AA and BWT of one model version (its newest evaluation)."""

    __pydantic_config__ = DOCUMENTED

    model_version: str
    training_run_id: str
    created_at: datetime | None
    average_accuracy: float
    backward_transfer: float | None


@dataclass(frozen=True)
class ForgettingTrend:
    """AA and BWT over versions: the newest evaluation of each version, oldest version first."""

    points: list[TrendPoint]
    aa_chart: charts.Chart
    forgetting_chart: charts.Chart
    """-BWT per version (up: more forgotten)."""


@dataclass(frozen=True)
class Overview:
    """Everything the overview screen shows."""

    generated_at: datetime
    model_name: str
    landing_dir: str
    """The landing location where files are dropped: a folder, or ``s3://...``."""
    formats: list[str]
    database_url: str
    """Credentials removed."""
    database_problem: str | None
    """Why clm's database could not be read (None when it was)."""
    registry: RegistryState
    candidates: list[Candidate]
    matrix: LatestMatrix | None
    ingestion: Ingestion
    audit: list[AuditLine]
    health: list[StageHealth] = field(default_factory=list)
    """Ingestion, drift checks, training, serving: last success, failures since, failing since when."""
    trend: ForgettingTrend | None = None
    """AA and BWT of each model version, oldest first (None: no evaluation yet)."""
    alerts: list[Alert] = field(default_factory=list)
    """Open, unacknowledged alerts, most recently seen first (:func:`clm_lib.reporting.alerts.open_alerts`)."""

    @property
    def is_fresh_install(self) -> bool:
        """Nothing ingested and nothing trained yet: the page shows how to start."""
        return self.ingestion.last_batch is None and not self.candidates


def build_overview(
    cfg: ClmConfig, *, max_candidates: int = 20, max_audit: int = 15, max_alerts: int = 10
) -> Overview:
    """Read clm's database and MLflow into an :class:`Overview`. Never raises for a missing or dead store."""
    registry = registry_state(cfg)
    candidates: list[Candidate] = []
    matrix: LatestMatrix | None = None
    ingestion = Ingestion(None, 0, 0, 0)
    audit_lines: list[AuditLine] = []
    health: list[StageHealth] = []
    trend: ForgettingTrend | None = None
    alerts: list[Alert] = []
    problem = _missing_sqlite(cfg.database_url)
    if problem is None:
        try:
            with session_scope(cfg.database_url) as session:
                candidates = _candidates(session, cfg.registry.model_name, registry, max_candidates)
                matrix = _latest_matrix(session)
                ingestion = _ingestion(session)
                audit_lines = [_audit_line(e) for e in audit.recent(session, limit=max_audit)]
                health = stage_health(session)
                trend = forgetting_trend(session)
                alerts = open_alerts(session, limit=max_alerts)
        except SQLAlchemyError as exc:
            log.warning("overview: cannot read clm database %s", redact_url(cfg.database_url), exc_info=True)
            problem = f"cannot read clm's database: {_first_line(exc)}. Run `clm init` to create or migrate it."
    else:
        problem = f"no clm database yet at {problem}; `clm init` creates it."
    return Overview(
        generated_at=datetime.now(UTC),
        model_name=cfg.registry.model_name,
        landing_dir=cfg.landing_uri,
        formats=list(cfg.data.formats),
        database_url=redact_url(cfg.database_url),
        database_problem=problem,
        registry=_with_scores(registry, candidates),
        candidates=candidates,
        matrix=matrix,
        ingestion=ingestion,
        audit=audit_lines,
        health=health,
        trend=trend,
        alerts=alerts,
    )


# --- clm's database -------------------------------------------------------------------------------


def _candidates(session, model_name: str, registry: RegistryState, limit: int) -> list[Candidate]:
    runs = list(session.scalars(select(TrainingRun).order_by(TrainingRun.started_at.desc()).limit(limit)))
    if not runs:
        return []
    newest_eval: dict[str, Evaluation] = {}
    for ev in session.scalars(
        select(Evaluation).where(Evaluation.training_run_id.in_([r.id for r in runs])).order_by(Evaluation.id)
    ):
        newest_eval[ev.training_run_id] = ev  # ascending ids: the last one wins
    versions = {r.id: r.model_version or getattr(newest_eval.get(r.id), "model_version", None) for r in runs}
    newest_gate: dict[str, GateDecision] = {}
    wanted = [v for v in versions.values() if v]
    if wanted:
        for gate in session.scalars(
            select(GateDecision)
            .where(GateDecision.model_name == model_name, GateDecision.model_version.in_(wanted))
            .order_by(GateDecision.id)
        ):
            newest_gate[gate.model_version] = gate
    out = []
    for run in runs:
        ev = newest_eval.get(run.id)
        version = versions[run.id]
        gate = newest_gate.get(version) if version else None
        out.append(
            Candidate(
                training_run_id=run.id,
                status=run.status,
                model_version=version,
                started_at=_utc(run.started_at),
                finished_at=_utc(run.finished_at),
                new_rows=run.new_rows or 0,
                replay_rows=run.replay_rows or 0,
                average_accuracy=ev.average_accuracy if ev else None,
                backward_transfer=ev.backward_transfer if ev else None,
                gate=GateVerdict.of(gate),
                aliases=registry.aliases_by_version.get(version, []) if version else [],
                airflow_dag_id=run.airflow_dag_id,
                airflow_run_id=run.airflow_run_id,
                error=run.error,
            )
        )
    return out


# Per stage: its table, when a run happened, which runs succeeded and which failed (others are under way).
_STAGES = (
    ("ingestion", "/ingestion", IngestionBatch.started_at,
     IngestionBatch.status == "committed", IngestionBatch.status.in_(("failed", "gave_up"))),
    ("drift", "/drift", DriftReport.created_at, DriftReport.status != "error", DriftReport.status == "error"),
    ("training", "/", TrainingRun.started_at,
     TrainingRun.status == "succeeded", TrainingRun.status.in_(("failed", "interrupted"))),
    ("serving", "/serving", Deployment.started_at,
     Deployment.status.in_(("promoted", "completed")), Deployment.status.in_(("failed", "rolled_back"))),
)  # fmt: skip


def stage_health(session) -> list[StageHealth]:
    """Health of each stage of the loop from clm's own tables (no process is asked)."""
    out = []
    for stage, screen, at, ok, bad in _STAGES:
        stored = session.scalar(select(func.max(at)).where(ok))  # as the driver returns it: compared below
        last_success = _utc(stored)
        failed = select(func.count(), func.min(at)).where(bad)
        if stored is not None:
            failed = failed.where(at > stored)
        count, first = session.execute(failed).one()
        last_failure = _utc(session.scalar(select(func.max(at)).where(bad)))
        state = "failing" if count else ("ok" if last_success else "never")
        out.append(StageHealth(stage, screen, state, last_success, last_failure, int(count),
                               _utc(first) if count else None))  # fmt: skip
    return out


def forgetting_trend(session, limit: int = 40) -> ForgettingTrend | None:
    """The newest evaluation of each of the last ``limit`` model versions, as points and two charts."""
    newest: dict[str, Evaluation] = {}
    for ev in session.scalars(
        select(Evaluation).where(Evaluation.model_version.is_not(None)).order_by(Evaluation.created_at, Evaluation.id)
    ):
        newest.pop(ev.model_version, None)
        newest[ev.model_version] = ev  # re-inserted: ordered by each version's newest evaluation
    evs = list(newest.values())[-limit:]
    if not evs:
        return None
    points = [
        TrendPoint(ev.model_version, ev.training_run_id, _utc(ev.created_at), float(ev.average_accuracy),
                   None if ev.backward_transfer is None else float(ev.backward_transfer))
        for ev in evs
    ]  # fmt: skip
    ticks = [(i, f"v{p.model_version}") for i, p in enumerate(points)]
    aa = [charts.Point(i, p.average_accuracy, None, "pt pt-ok", f"v{p.model_version}: AA {p.average_accuracy:.1f}")
          for i, p in enumerate(points)]  # fmt: skip
    lost = [None if p.backward_transfer is None else max(0.0, -p.backward_transfer) for p in points]
    fg = [
        charts.Point(i, v, None, "pt pt-drift" if v else "pt pt-ok",
                     f"v{p.model_version}: BWT {'—' if p.backward_transfer is None else f'{p.backward_transfer:+.1f}'}")
        for i, (p, v) in enumerate(zip(points, lost, strict=True))
    ]  # fmt: skip
    return ForgettingTrend(
        points,
        charts.series_chart(aa, len(points), ticks, charts.LinearScale(100.0)),
        charts.series_chart(fg, len(points), ticks, charts.LinearScale.fitting(lost)),
    )


def _latest_matrix(session) -> LatestMatrix | None:
    ev = session.scalars(select(Evaluation).order_by(Evaluation.created_at.desc(), Evaluation.id.desc())).first()
    return matrix_of(ev)


def matrix_of(ev: Evaluation | None) -> LatestMatrix | None:
    """An evaluation's accuracy matrix R with AA, BWT and per-task forgetting (None when it has none)."""
    if ev is None or not ev.tasks or not ev.matrix:
        return None
    tasks = [str(t) for t in ev.tasks]
    rows = [[None if v is None else float(v) for v in row] for row in ev.matrix]
    learned_at = {}
    for j, task in enumerate(tasks):
        first = next((i for i, row in enumerate(rows) if j < len(row) and row[j] is not None), None)
        learned_at[task] = first if first is not None else len(rows) - 1
    rows = [row + [None] * (len(tasks) - len(row)) for row in rows]  # older rows may predate later tasks
    r = AccuracyMatrix(tasks=tasks, rows=rows, learned_at=learned_at)
    return LatestMatrix(
        training_run_id=ev.training_run_id,
        model_version=ev.model_version,
        created_at=_utc(ev.created_at),
        tasks=tasks,
        rows=rows,
        learned_at=learned_at,
        average_accuracy=float(ev.average_accuracy),
        backward_transfer=None if ev.backward_transfer is None else float(ev.backward_transfer),
        forgetting=r.forgetting(),
    )


def _ingestion(session) -> Ingestion:
    last = session.scalars(
        select(IngestionBatch).order_by(IngestionBatch.started_at.desc(), IngestionBatch.id.desc())
    ).first()
    batches, curated, quarantined = session.execute(
        select(
            func.count(IngestionBatch.id),
            func.coalesce(func.sum(IngestionBatch.rows_curated), 0),
            func.coalesce(func.sum(IngestionBatch.rows_quarantined), 0),
        ).where(IngestionBatch.status == "committed")
    ).one()
    batch = None
    if last is not None:
        batch = Batch(
            id=last.id,
            source=last.source,
            source_format=last.source_format,
            status=last.status,
            started_at=_utc(last.started_at),
            finished_at=_utc(last.finished_at),
            rows_in=last.rows_in or 0,
            rows_curated=last.rows_curated or 0,
            rows_quarantined=last.rows_quarantined or 0,
            rows_duplicate=last.rows_duplicate or 0,
            per_task=_counts(last.task_counts),
            per_reason=_counts(last.quarantine_reasons),
            notes=[str(n) for n in last.notes or []],
            error=last.error,
        )
    return Ingestion(batch, int(batches), int(curated), int(quarantined))


def _counts(raw: Mapping[str, Any] | None, prefix: str = "") -> list[Count]:
    """Flatten ``{"billing": 12}`` or ``{"billing": {"curated": 10, "quarantined": 2}}``, largest first."""
    out: list[Count] = []
    for key, value in (raw or {}).items():
        label = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.extend(_counts(value, prefix=f"{label} · "))
        elif isinstance(value, int | float) and not isinstance(value, bool):
            out.append(Count(label, int(value)))
    return sorted(out, key=lambda c: (-c.value, c.label)) if not prefix else out


def _audit_line(entry) -> AuditLine:
    return AuditLine(
        at=_utc(entry.at),
        actor=entry.actor,
        action=entry.action,
        target=entry.target,
        from_value=entry.from_value,
        to_value=entry.to_value,
        reason=entry.reason or "",
    )


# --- MLflow ----------------------------------------------------------------------------------------


def registry_state(cfg: ClmConfig, *, versions: bool = False) -> RegistryState:
    """MLflow's view of the model: its aliases, champion and challenger (and, with ``versions``, every version).
    Bounded and tolerant (also used by the serving and registry screens): a missing store, an empty registry or a
    dead server is a state, not an exception."""
    uri = cfg.tracking_uri
    shown = redact_url(uri)
    name = cfg.registry.model_name
    missing = _missing_sqlite(uri)
    if missing:
        return RegistryState("empty", f"No MLflow registry yet ({missing}); the first candidate creates it.", shown)
    unreachable = _probe(uri)
    if unreachable:
        return RegistryState("unreachable", f"MLflow at {shown} is not answering: {unreachable}.", shown)
    try:
        from mlflow import MlflowClient
        from mlflow.exceptions import MlflowException

        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        with _bounded_mlflow_http():
            try:
                model = client.get_registered_model(name)
            except MlflowException as exc:
                if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                    return RegistryState("empty", f"No model is registered as '{name}' yet.", shown)
                raise
            aliases: dict[str, str] = {str(k): str(v) for k, v in (model.aliases or {}).items()}
            cards = {a: _aliased(client, name, a) for a in (CHAMPION, CHALLENGER) if a in aliases}
            listed = _versions(client, name) if versions else None
    except Exception as exc:  # any failure to read MLflow is a state of the page, not a crash
        log.warning("overview: cannot read MLflow registry at %s", shown, exc_info=True)
        return RegistryState("unreachable", f"Cannot read the MLflow registry at {shown}: {_first_line(exc)}", shown)
    by_version: dict[str, list[str]] = {}
    for alias, version in sorted(aliases.items()):
        by_version.setdefault(version, []).append(alias)
    return RegistryState(
        "ok",
        f"{len(aliases)} alias(es) on '{name}'." if aliases else f"'{name}' has versions but no alias yet.",
        shown,
        champion=cards.get(CHAMPION),
        challenger=cards.get(CHALLENGER),
        aliases_by_version=by_version,
        versions=listed,
    )


_MAX_VERSION_PAGES = 20
"""Pages of 10,000 versions read at most: a registry larger than that lists its newest 200,000."""


def _versions(client, name: str) -> dict[str, RegisteredVersion]:
    out: dict[str, RegisteredVersion] = {}
    token = None
    for _ in range(_MAX_VERSION_PAGES):
        page = client.search_model_versions(f"name = '{name}'", order_by=["version_number DESC"], page_token=token)
        for mv in page:
            created = mv.creation_timestamp
            out[str(mv.version)] = RegisteredVersion(
                version=str(mv.version),
                registered_at=datetime.fromtimestamp(created / 1000, tz=UTC) if created else None,
                mlflow_run_id=mv.run_id or None,
                tags={str(k): str(v) for k, v in (mv.tags or {}).items() if str(k).startswith("clm.")},
            )
        token = page.token
        if not token:
            break
    return out


def _aliased(client, name: str, alias: str) -> AliasedVersion:
    mv = client.get_model_version_by_alias(name, alias)
    created = mv.creation_timestamp
    return AliasedVersion(
        alias=alias,
        version=str(mv.version),
        mlflow_run_id=mv.run_id or None,
        training_run_id=(mv.tags or {}).get("clm.training_run_id") or None,
        registered_at=datetime.fromtimestamp(created / 1000, tz=UTC) if created else None,
    )


def _with_scores(registry: RegistryState, candidates: list[Candidate]) -> RegistryState:
    """Attach AA/BWT from clm's evaluations to the champion and challenger cards."""
    by_version = {c.model_version: c for c in candidates if c.model_version}

    def enrich(card: AliasedVersion | None) -> AliasedVersion | None:
        c = by_version.get(card.version) if card else None
        if card is None or c is None:
            return card
        return replace(
            card,
            training_run_id=card.training_run_id or c.training_run_id,
            average_accuracy=c.average_accuracy,
            backward_transfer=c.backward_transfer,
        )

    return replace(registry, champion=enrich(registry.champion), challenger=enrich(registry.challenger))


def _probe(uri: str) -> str | None:
    """For an HTTP tracking server, a quick TCP connect: None if it accepts, else why not."""
    if urlsplit(uri).scheme not in ("http", "https"):
        return None
    return tcp(uri)


@contextmanager
def _bounded_mlflow_http() -> Iterator[None]:
    # MLflow reads these per request. Only unset ones are bounded, so an operator's own setting wins;
    # concurrent page views may at worst see MLflow's defaults, never a wrong value.
    added = [k for k in _MLFLOW_HTTP_BOUNDS if k not in os.environ]
    for key in added:
        os.environ[key] = _MLFLOW_HTTP_BOUNDS[key]
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)
