"""The Training pipeline screen and ``/clm/api/v1/training/...``: every continual update as clm's database recorded it.

A run's row says what started it (a drift check and its detectors, the volume trigger, a person with a reason, the
``clm_retrain_watch`` sensor), its state, how long it took and where to see it in Airflow; its detail adds the
checks' statistics, the step loss curve (the ``losses`` of the run's ``train_summary.json``, the only place the
recipe stores them), the MLflow run registered from it and the promotions of its model version. When the next
drift check is due is computed from the last check clm stored: ``clm_drift_monitor`` runs hourly at
:data:`MONITOR_MINUTE` past the hour (and on every new curated version); the scheduler is not asked.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from pydantic import computed_field
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from clm_lib.config import ClmConfig
from clm_lib.db.models import Deployment, DriftReport, TrainingRun
from clm_lib.reporting import charts
from clm_lib.reporting.drift_checks import Check, checks_by_id
from clm_lib.reporting.schema import DOCUMENTED
from clm_lib.reporting.stores import first_line, missing_sqlite, reading, redact_url, utc

log = logging.getLogger(__name__)

TRAINING_DAG = "clm_continual_training"
"""The DAG the screen links to and its "retrain now" button triggers (:mod:`clm_lib.airflow.retrain`)."""
MONITOR_DAG = "clm_drift_monitor"
MONITOR_MINUTE = 17
"""``clm_drift_monitor``'s cron is ``17 * * * *`` (UTC): hourly at :17, besides every new curated version."""
OVERDUE_AFTER = timedelta(minutes=15)
"""A check this late past its slot is reported overdue (the monitor is paused, or its runs fail)."""
STATUSES = ("running", "succeeded", "failed", "skipped", "interrupted")
TRIGGER_KINDS = ("drift", "volume", "manual", "sensor", "asset", "other")
"""What started a run: a drift check's detectors (``drift``), only its volume trigger (``volume``), a person
(``manual``, with a reason), ``clm_retrain_watch`` (``sensor``), another Asset event, or anything else."""
SUMMARY_FILE = "train_summary.json"
"""= :data:`clm_lib.training.recipe.SUMMARY_FILE` (not imported: the recipe pulls in torch)."""
MAX_SUMMARY_BYTES = 32 * 1024 * 1024
MAX_LOSS_POINTS = 400
"""A longer loss curve is thinned to this many points (every k-th step, the last one kept)."""
RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:+-]{0,63}")


class NotFound(LookupError):
    """An unknown training run: the message names it."""


class BadFilter(ValueError):
    """A filter that cannot be applied: ``field`` names it."""

    def __init__(self, field_name: str, message: str):
        super().__init__(message)
        self.field = field_name


@dataclass(frozen=True)
class Trigger:
    """What started a run."""

    __pydantic_config__ = DOCUMENTED

    kind: str
    """One of :data:`TRIGGER_KINDS`."""
    summary: str
    reason: str | None
    """What the person (or the sensor) said when triggering it."""
    plan: str | None
    """The update plan's reason (how much new data it trained on)."""
    run_type: str | None
    drift_check_ids: list[str]
    detectors: list[str]
    """The detectors whose firing requested it."""


@dataclass(frozen=True)
class RunRow:
    """One training run as listed."""

    __pydantic_config__ = DOCUMENTED

    id: str
    status: str
    """running, succeeded, failed, skipped or interrupted."""
    trigger: Trigger
    started_at: datetime | None
    finished_at: datetime | None
    duration_s: float | None
    model_version: str | None
    parent_model_version: str | None
    new_rows: int
    replay_rows: int
    tasks: list[str]
    steps: int | None
    final_loss: float | None
    airflow_dag_id: str | None
    airflow_run_id: str | None
    airflow_path: str | None
    """The run's grid in Airflow, relative to Airflow's root (``/dags/<dag>/runs/<run>``)."""
    error: str | None


@dataclass(frozen=True)
class LossCurve:
    """The step losses the recipe stored, thinned to at most :data:`MAX_LOSS_POINTS` points."""

    __pydantic_config__ = DOCUMENTED

    source: str | None
    steps: list[int]
    """1-based step of each point."""
    losses: list[float]
    total_steps: int
    problem: str | None
    """Why there is no curve (no summary file, unreadable), or None."""

    @computed_field
    @property
    def first(self) -> float | None:
        """The first step's loss."""
        return self.losses[0] if self.losses else None

    @computed_field
    @property
    def last(self) -> float | None:
        """The last step's loss."""
        return self.losses[-1] if self.losses else None

    @computed_field
    @property
    def lowest(self) -> float | None:
        """The lowest loss of the curve."""
        return min(self.losses) if self.losses else None


@dataclass(frozen=True)
class MlflowRun:
    """The MLflow run logged for a training run (found by its ``clm.training_run_id`` tag)."""

    __pydantic_config__ = DOCUMENTED

    tracking_uri: str
    """Redacted."""
    experiment_id: str | None
    run_id: str | None
    url: str | None
    """The run in MLflow's UI, only for an http(s) tracking server."""
    problem: str | None


@dataclass(frozen=True)
class Promotion:
    """A promotion (or rollback) of the run's model version."""

    __pydantic_config__ = DOCUMENTED

    id: int
    kind: str
    status: str
    strategy: str
    started_at: datetime | None
    outcome: str


@dataclass(frozen=True)
class RunDetail:
    """One training run with the checks that requested it, its loss curve, MLflow run and promotions."""

    __pydantic_config__ = DOCUMENTED

    run: RunRow
    checks: list[Check]
    """The drift checks that requested it, every detector's verdict with its statistic."""
    metrics: dict[str, Any]
    curated_version: int | None
    previous_curated_version: int | None
    replay_version: int | None
    base_model: str
    config_hash: str
    loss: LossCurve
    mlflow: MlflowRun | None
    promotions: list[Promotion]


@dataclass(frozen=True)
class NextCheck:
    """When ``clm_drift_monitor`` should check next, from the last check clm stored."""

    __pydantic_config__ = DOCUMENTED

    last_check_at: datetime | None
    next_at: datetime
    overdue: bool
    schedule: str = f"hourly at :{MONITOR_MINUTE} UTC, and on every new curated version"


@dataclass(frozen=True)
class RunPage:
    """One page of training runs: ``items`` from ``offset``, at most ``limit`` of ``total``."""

    __pydantic_config__ = DOCUMENTED

    items: list[RunRow]
    total: int
    offset: int
    limit: int


@dataclass
class TrainingPage:
    generated_at: datetime
    database_url: str
    runs: RunPage
    next_check: NextCheck
    filters: dict[str, str]
    selected: RunDetail | None
    loss_chart: charts.Chart | None
    filter_problem: BadFilter | None = None
    status: int = 200
    statuses: tuple[str, ...] = STATUSES
    trigger_kinds: tuple[str, ...] = TRIGGER_KINDS
    notes: list[str] = field(default_factory=list)


# --- triggers ---------------------------------------------------------------------------------------


def _check_ids(trigger: Mapping[str, Any]) -> list[str]:
    ids = trigger.get("drift_checks") or []
    return [str(i) for i in ids] if isinstance(ids, list) else []


def describe_trigger(trigger: Mapping[str, Any] | None, detectors: list[str]) -> Trigger:
    """Classify a run's stored ``trigger`` (``clm_lib.airflow.operators.training.describe_trigger``)."""
    trigger = trigger if isinstance(trigger, Mapping) else {}
    checks = _check_ids(trigger)
    raw = str(trigger.get("kind") or "")
    reason = str(trigger["reason"]) if trigger.get("reason") else None
    if checks and raw == "manual":
        kind, summary = "sensor", f"clm_retrain_watch, for drift check {', '.join(checks)}"
    elif checks:
        kind = "volume" if detectors and set(detectors) == {"volume"} else "drift"
        fired = ", ".join(detectors) if detectors else "detectors not recorded"
        summary = f"drift check {', '.join(checks)}: {fired}"
    elif raw == "manual":
        kind, summary = "manual", f"manual: {reason}" if reason else "manual, no reason given"
    elif raw == "asset":
        kind, summary = "asset", "Asset event"
    else:
        kind, summary = "other", raw or "not recorded"
    return Trigger(kind, summary, reason, str(trigger["plan"]) if trigger.get("plan") else None,
                   str(trigger.get("run_type")) if trigger.get("run_type") else None, checks, detectors)  # fmt: skip


def _triggering_detectors(session: Session, runs: list[TrainingRun]) -> dict[str, list[str]]:
    """Run id -> the detectors whose firing requested it (by the checks its trigger names, or linked to it)."""
    by_check: dict[str, str] = {}
    for run in runs:
        for check_id in _check_ids(run.trigger or {}):
            by_check[check_id] = run.id
    ids = [r.id for r in runs]
    out: dict[str, list[str]] = {}
    if not ids:
        return out
    where = DriftReport.training_run_id.in_(ids)
    if by_check:
        where = where | DriftReport.check_id.in_(list(by_check))
    stmt = select(DriftReport.check_id, DriftReport.training_run_id, DriftReport.detector).where(
        DriftReport.triggered.is_(True), where
    )
    for check_id, run_id, detector in session.execute(stmt.order_by(DriftReport.id)):
        owner = run_id if run_id in ids else by_check.get(check_id)
        if owner and detector not in out.setdefault(owner, []):
            out[owner].append(detector)
    return out


# --- runs -------------------------------------------------------------------------------------------


def airflow_path(dag_id: str | None, run_id: str | None) -> str | None:
    """The run's grid in Airflow 3's UI, relative to Airflow's root."""
    if not dag_id or not run_id:
        return None
    return f"/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}"


def _row(run: TrainingRun, detectors: list[str]) -> RunRow:
    started, finished = utc(run.started_at), utc(run.finished_at)
    metrics = run.metrics or {}
    steps = metrics.get("steps")
    loss = metrics.get("final_loss")
    return RunRow(
        id=run.id,
        status=run.status,
        trigger=describe_trigger(run.trigger, detectors),
        started_at=started,
        finished_at=finished,
        duration_s=round((finished - started).total_seconds(), 1) if started and finished else None,
        model_version=run.model_version,
        parent_model_version=run.parent_model_version,
        new_rows=run.new_rows or 0,
        replay_rows=run.replay_rows or 0,
        tasks=[str(t) for t in run.tasks or []],
        steps=int(steps) if isinstance(steps, int | float) else None,
        final_loss=float(loss) if isinstance(loss, int | float) else None,
        airflow_dag_id=run.airflow_dag_id,
        airflow_run_id=run.airflow_run_id,
        airflow_path=airflow_path(run.airflow_dag_id, run.airflow_run_id),
        error=first_line(RuntimeError(run.error)) if run.error else None,
    )


def check_filters(status: str | None, trigger: str | None) -> None:
    if status and status not in STATUSES:
        raise BadFilter("status", f"unknown status {status!r}; one of {', '.join(STATUSES)}")
    if trigger and trigger not in TRIGGER_KINDS:
        raise BadFilter("trigger", f"unknown trigger kind {trigger!r}; one of {', '.join(TRIGGER_KINDS)}")


def list_runs(
    cfg: ClmConfig, *, status: str | None = None, trigger: str | None = None, offset: int = 0, limit: int = 50
) -> RunPage:
    """Training runs, newest first, filtered by status and by what triggered them."""
    check_filters(status, trigger)
    with reading(cfg.database_url) as s:
        stmt = select(TrainingRun).order_by(TrainingRun.started_at.desc(), TrainingRun.id.desc())
        if status:
            stmt = stmt.where(TrainingRun.status == status)
        if not trigger:
            total = s.scalar(select(func.count()).select_from(stmt.order_by(None).subquery())) or 0
            runs = list(s.scalars(stmt.offset(offset).limit(limit)))
            detectors = _triggering_detectors(s, runs)
            return RunPage([_row(r, detectors.get(r.id, [])) for r in runs], total, offset, limit)
        # The kind is derived from the trigger JSON and the drift reports: filter after classifying.
        runs = list(s.scalars(stmt))
        detectors = _triggering_detectors(s, runs)
        rows = [row for r in runs if (row := _row(r, detectors.get(r.id, []))).trigger.kind == trigger]
    return RunPage(rows[offset : offset + limit], len(rows), offset, limit)


def run_detail(cfg: ClmConfig, run_id: str, *, with_mlflow: bool = True) -> RunDetail:
    """One run: its row, the drift checks that requested it, the loss curve, MLflow and its promotions."""
    if not RUN_ID.fullmatch(run_id or ""):
        raise NotFound(f"no training run {run_id[:80]!r}")
    with reading(cfg.database_url) as s:
        run = s.get(TrainingRun, run_id)
        if run is None:
            raise NotFound(f"no training run {run_id!r}")
        detectors = _triggering_detectors(s, [run])
        row = _row(run, detectors.get(run.id, []))
        found = checks_by_id(s, row.trigger.drift_check_ids, training_run_id=run.id)
        promotions = []
        if run.model_version:
            deps = s.scalars(
                select(Deployment).where(Deployment.version == run.model_version).order_by(Deployment.id.desc())
            )
            promotions = [Promotion(d.id, d.kind, d.status, d.strategy, utc(d.started_at), d.outcome or "")
                          for d in deps]  # fmt: skip
        detail = dict(
            metrics=dict(run.metrics or {}),
            curated_version=run.curated_version,
            previous_curated_version=run.previous_curated_version,
            replay_version=run.replay_version,
            base_model=run.base_model,
            config_hash=run.config_hash,
            output_dir=run.output_dir,
        )
    output_dir = detail.pop("output_dir")
    return RunDetail(
        run=row,
        checks=found,
        loss=loss_curve(output_dir),
        mlflow=mlflow_run(cfg, run_id) if with_mlflow and row.status == "succeeded" else None,
        promotions=promotions,
        **detail,
    )


def loss_curve(output_dir: str | None) -> LossCurve:
    """The step losses in ``<output_dir>/train_summary.json``, or why there are none."""
    if not output_dir:
        return LossCurve(None, [], [], 0, "the run recorded no output folder")
    path = Path(output_dir) / SUMMARY_FILE
    try:
        if not path.is_file():
            return LossCurve(str(path), [], [], 0, f"no {SUMMARY_FILE} at {path} (a run still training, one that "
                             "failed before saving, or one trained on another machine)")  # fmt: skip
        if path.stat().st_size > MAX_SUMMARY_BYTES:
            return LossCurve(str(path), [], [], 0, f"{path} is larger than {MAX_SUMMARY_BYTES // 2**20} MiB")
        raw = json.loads(path.read_text(encoding="utf-8")).get("losses")
    except (OSError, ValueError, AttributeError) as exc:
        return LossCurve(str(path), [], [], 0, f"cannot read {path}: {first_line(exc)}")
    values = [float(v) for v in raw or [] if isinstance(v, int | float) and not isinstance(v, bool)]
    if not values:
        return LossCurve(str(path), [], [], 0, f"{path} holds no step losses")
    stride = max(1, -(-len(values) // MAX_LOSS_POINTS))
    picked = list(range(0, len(values), stride))
    if picked[-1] != len(values) - 1:
        picked.append(len(values) - 1)
    return LossCurve(str(path), [i + 1 for i in picked], [round(values[i], 5) for i in picked], len(values), None)


def loss_chart(curve: LossCurve) -> charts.Chart | None:
    """The loss curve on the charts' shared shape (one slot per point, linear scale from 0)."""
    if not curve.losses:
        return None
    points = [charts.Point(i, v, None, "pt pt-ok", f"step {s}: loss {v:.4f}")
              for i, (s, v) in enumerate(zip(curve.steps, curve.losses, strict=True))]  # fmt: skip
    last = len(points) - 1
    ticks = [(0, f"step {curve.steps[0]}")] + ([(last, f"step {curve.steps[-1]}")] if last else [])
    return charts.series_chart(points, len(points), ticks, charts.LinearScale.fitting(curve.losses))


# --- MLflow -----------------------------------------------------------------------------------------


def mlflow_ui_base(tracking_uri: str) -> str | None:
    """The MLflow UI's address for an http(s) tracking URI, without credentials, query or fragment; else None."""
    parts = urlsplit(tracking_uri)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path.rstrip('/')}"


def mlflow_run(cfg: ClmConfig, training_run_id: str) -> MlflowRun:
    """The MLflow run tagged with this training run (the one the model version was logged from), or why not."""
    from clm_lib.reporting.overview import _bounded_mlflow_http, _probe

    uri = cfg.tracking_uri
    shown = redact_url(uri)
    missing = missing_sqlite(uri)
    if missing:
        return MlflowRun(shown, None, None, None, f"no MLflow store yet ({missing})")
    unreachable = _probe(uri)
    if unreachable:
        return MlflowRun(shown, None, None, None, f"MLflow at {shown} is not answering: {unreachable}")
    try:
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        with _bounded_mlflow_http():
            experiment = client.get_experiment_by_name(cfg.registry.experiment)
            if experiment is None:
                return MlflowRun(shown, None, None, None, f"no MLflow experiment '{cfg.registry.experiment}' yet")
            found = client.search_runs(
                [experiment.experiment_id],
                filter_string=f"tags.`clm.training_run_id` = '{training_run_id}'",
                order_by=["attributes.start_time DESC"],
                max_results=5,
            )
    except Exception as exc:  # MLflow down or refusing is a state of the page
        log.warning("training page: cannot read MLflow at %s", shown, exc_info=True)
        return MlflowRun(shown, None, None, None, f"cannot read MLflow at {shown}: {first_line(exc)}")
    done = [r for r in found if r.info.status == "FINISHED"] or found
    if not done:
        return MlflowRun(shown, experiment.experiment_id, None, None, "no MLflow run logged for it (not registered)")
    run = done[0].info
    base = mlflow_ui_base(uri)
    url = f"{base}/#/experiments/{quote(run.experiment_id)}/runs/{quote(run.run_id)}" if base else None
    return MlflowRun(shown, run.experiment_id, run.run_id, url, None)


# --- the next drift check ---------------------------------------------------------------------------


def next_slot(after: datetime) -> datetime:
    """The first ``MONITOR_MINUTE`` past an hour strictly after ``after``."""
    slot = after.replace(minute=MONITOR_MINUTE, second=0, microsecond=0)
    return slot if slot > after else slot + timedelta(hours=1)


def next_check(session: Session, now: datetime | None = None) -> NextCheck:
    now = now or datetime.now(UTC)
    last = utc(session.scalar(select(func.max(DriftReport.created_at))))
    due = next_slot(last or now)
    return NextCheck(last, due, last is not None and due + OVERDUE_AFTER < now)


def schedule(cfg: ClmConfig, now: datetime | None = None) -> NextCheck:
    with reading(cfg.database_url) as s:
        return next_check(s, now)


# --- the page ---------------------------------------------------------------------------------------


def _int(args: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = args.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadFilter(name, f"{name} must be a whole number, not {str(raw)[:40]!r}") from None
    if not low <= value <= high:
        raise BadFilter(name, f"{name} must be between {low} and {high}")
    return value


def build_training(cfg: ClmConfig, args: Mapping[str, str] | None = None, now: datetime | None = None) -> TrainingPage:
    """The Training pipeline screen: filtered runs, the selected one (``run``, default the newest) in detail."""
    args = args or {}
    problem = None
    status, trigger = args.get("status") or None, args.get("trigger") or None
    try:
        check_filters(status, trigger)
        offset = _int(args, "offset", 0, 0, 10_000_000)
    except BadFilter as exc:
        problem, status, trigger, offset = exc, None, None, 0
    runs = list_runs(cfg, status=status, trigger=trigger, offset=offset, limit=25)
    with reading(cfg.database_url) as s:
        due = next_check(s, now)
    wanted = args.get("run") or (runs.items[0].id if runs.items else None)
    selected = run_detail(cfg, wanted) if wanted else None
    return TrainingPage(
        generated_at=datetime.now(UTC),
        database_url=redact_url(cfg.database_url),
        runs=runs,
        next_check=due,
        filters={k: v for k, v in (("status", status), ("trigger", trigger)) if v},
        selected=selected,
        loss_chart=loss_chart(selected.loss) if selected else None,
        filter_problem=problem,
        status=422 if problem else 200,
    )
