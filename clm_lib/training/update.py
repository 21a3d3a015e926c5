"""One continual update, as the scheduler sees it: plan, gather data, train, remember.

The recipe (:mod:`clm_lib.training.recipe`) knows how to train; this module knows *what* to train
on and records it: the curated Delta version read, the one the previous update read (so "new" is
exactly the rows in between, by time travel), the parent model, the config hash, what triggered the
run and what each strategy read and wrote (the replay buffer's versions, its weights and why). That
record is the lineage MLflow tags are made from. Whether there is enough new data is the drift
policy's call (:func:`clm_lib.drift.policy.volume_rule`); state kept between updates belongs to the
strategies (their ``before_update``/``after_update`` hooks), this module only persists what they return.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import select

from clm_lib.config import ClmConfig
from clm_lib.db import session_scope
from clm_lib.db.models import ConfigVersion, TrainingRun, utcnow
from clm_lib.errors import TrainingError
from clm_lib.faults import fault_point
from clm_lib.training.context import TrainResult, UpdateContext

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UpdatePlan:
    """Whether an update should run now, and on which Delta versions."""

    should_train: bool
    reason: str
    new_rows: int
    curated_version: int | None
    previous_curated_version: int | None
    task_counts: dict[str, int] = field(default_factory=dict)


def last_successful_run(cfg: ClmConfig) -> TrainingRun | None:
    with session_scope(cfg.database_url) as s:
        return s.scalars(
            select(TrainingRun).where(TrainingRun.status == "succeeded").order_by(TrainingRun.finished_at.desc())
        ).first()


def _new_training_rows(cfg: ClmConfig, previous_version: int | None) -> pa.Table:
    from clm_lib.data.ingest import curated_rows_since

    rows = curated_rows_since(cfg, previous_version)
    return rows.filter(pc.equal(rows["split"], "train")) if rows.num_rows else rows


def plan_update(cfg: ClmConfig, *, force: bool = False, requested: bool = False) -> UpdatePlan:
    """What an update would train on now (the new curated training rows since the last training), and whether it
    should.

    ``force`` (a person forced it) and ``requested`` (a drift check asked for it: the policy already decided,
    volume included) train on whatever new rows there are. Otherwise the drift policy's volume rule decides
    (:func:`clm_lib.drift.policy.volume_rule`: ``drift.volume.initial_rows`` before the first training,
    ``drift.volume.min_new_rows`` after), so a manual run and a drift check never disagree on "enough new data".
    """
    from clm_lib.data import lake
    from clm_lib.drift.policy import volume_rule

    last = last_successful_run(cfg)
    previous = last.curated_version if last else None
    current = lake.table_version(cfg, "curated")
    if current is None:
        return UpdatePlan(False, "no curated data yet", 0, None, previous)
    new = _new_training_rows(cfg, previous)
    counts = {str(k): int(v) for k, v in zip(*_value_counts(new, "task"), strict=True)}
    n = new.num_rows
    if force or requested:
        how = "forced" if force else "requested by a drift check"
        reason = f"{how}, with {n} new curated rows" if n else f"{how}, but no new curated rows since the last training"
        return UpdatePlan(bool(n), reason, n, current, previous, counts)
    rule = volume_rule(n, cfg.drift, first_training=previous is None)
    if rule is None:
        reason = (
            f"{n} new curated rows; the volume trigger is off (drift.volume.enabled: false), so only a drift "
            "check's retrain request or force starts a training"
        )
        return UpdatePlan(False, reason, n, current, previous, counts)
    return UpdatePlan(bool(rule.drift), rule.explanation, n, current, previous, counts)


def _value_counts(table: pa.Table, column: str) -> tuple[list[Any], list[int]]:
    if not table.num_rows:
        return [], []
    vc = pc.value_counts(table[column]).to_pylist()
    return [d["values"] for d in vc], [d["counts"] for d in vc]


def _parent_adapter(cfg: ClmConfig, parent_version: str | None) -> Path | None:
    if parent_version is None:
        return None
    with session_scope(cfg.database_url) as s:
        run = s.scalars(select(TrainingRun).where(TrainingRun.model_version == parent_version)).first()
    local = Path(run.output_dir) / "adapter" if run and run.output_dir else None
    if local and local.is_dir():
        return local
    # The champion was trained elsewhere (another machine, a pod): fetch its adapter from MLflow.
    import mlflow

    from clm_lib.registry.mlflow_registry import client

    client(cfg)
    uri = f"models:/{cfg.registry.model_name}/{parent_version}"
    return Path(mlflow.artifacts.download_artifacts(f"{uri}/artifacts/adapter"))


def _tasks_in_order(parent_tasks: list[str], new: pa.Table, known: list[str]) -> list[str]:
    seen = list(parent_tasks)
    for task in new["task"].to_pylist() if new.num_rows else []:
        if task not in seen:
            seen.append(task)
    # Keep tasks that arrived together in the configured order, so R's columns read naturally.
    head, tail = seen[: len(parent_tasks)], seen[len(parent_tasks) :]
    return head + sorted(tail, key=lambda t: known.index(t) if t in known else len(known))


@dataclass
class StartedUpdate:
    """An update recorded as ``running``, with everything training it needs (:func:`start_update`)."""

    run_id: str
    update: UpdateContext
    strategies: list[Any]
    """The strategies, prepared (``before_update`` ran): they hold what they read from clm's stores."""
    new: pa.Table
    replay: pa.Table
    parent_version: str | None
    output_dir: Path


def start_update(
    cfg: ClmConfig,
    *,
    trigger: dict[str, Any],
    plan: UpdatePlan,
    airflow_dag_id: str | None = None,
    airflow_run_id: str | None = None,
) -> StartedUpdate:
    """Gather what ``plan`` trains on (new rows, the strategies' state, the parent) and record the run as
    ``running``. Training it, here (:func:`run_update`) or in a pod (:mod:`clm_lib.training.spec`), comes next."""
    from clm_lib.modeling.build import ensure_base_model
    from clm_lib.registry.aliases import CHAMPION
    from clm_lib.registry.mlflow_registry import alias_version
    from clm_lib.training.stale import earlier_try_versions, reclaim_interrupted
    from clm_lib.training.strategies import build_strategies

    if not plan.should_train:
        raise TrainingError(f"nothing to train: {plan.reason}")
    run_id = f"run-{utcnow():%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
    base = ensure_base_model(cfg)
    parent_version = alias_version(cfg, CHAMPION)
    parent_tasks: list[str] = []
    if parent_version:
        with session_scope(cfg.database_url) as s:
            parent = s.scalars(select(TrainingRun).where(TrainingRun.model_version == parent_version)).first()
            parent_tasks = list(parent.tasks) if parent else []
    new = _new_training_rows(cfg, plan.previous_curated_version)
    pinned = earlier_try_versions(cfg, airflow_dag_id, airflow_run_id)
    update = UpdateContext(cfg=cfg, run_id=run_id, new=new, pinned_versions=pinned)
    strategies = build_strategies(cfg)
    for strategy in strategies:
        strategy.before_update(update)
    replay_version = update.read_versions.get("replay")
    output_dir = cfg.models_dir / "runs" / run_id
    run = TrainingRun(
        id=run_id,
        status="running",
        trigger=trigger,
        airflow_dag_id=airflow_dag_id,
        airflow_run_id=airflow_run_id,
        parent_model_version=parent_version,
        base_model=str(base),
        config_hash=cfg.config_hash(),
        config_revision=cfg.revision,
        curated_version=plan.curated_version,
        previous_curated_version=plan.previous_curated_version,
        replay_version=replay_version,
        new_rows=new.num_rows,
        tasks=_tasks_in_order(parent_tasks, new, cfg.data.tasks),
        output_dir=str(output_dir),
    )
    reclaim_interrupted(cfg, run)  # dead `running` rows -> interrupted; this Airflow task's checkpoint resumed
    with session_scope(cfg.database_url) as s:
        if s.get(ConfigVersion, run.config_hash) is None:
            s.add(ConfigVersion(config_hash=run.config_hash, content=cfg.model_dump(mode="json")))
        s.add(run)
    log.info("training %s: %s new rows, replay v%s, parent %s", run_id, new.num_rows, replay_version, parent_version)
    replay = update.data.get("replay", new.slice(0, 0))
    return StartedUpdate(run_id, update, strategies, new, replay, parent_version, output_dir)


def fail_update(cfg: ClmConfig, run_id: str, exc: BaseException) -> None:
    with session_scope(cfg.database_url) as s:
        stored = s.get(TrainingRun, run_id)
        stored.status, stored.error, stored.finished_at = "failed", str(exc)[:4000], utcnow()


def after_update(started: StartedUpdate, result: TrainResult) -> dict[str, dict[str, Any]]:
    """The strategies write back what the next update reads (the replay buffer...); their records, by name."""
    return {s.name: s.after_update(started.update, result) for s in started.strategies}


def succeed_update(cfg: ClmConfig, run_id: str, result: TrainResult, records: dict[str, dict[str, Any]]) -> TrainingRun:
    with session_scope(cfg.database_url) as s:
        stored = s.get(TrainingRun, run_id)
        stored.status = "succeeded"
        stored.finished_at = utcnow()
        stored.replay_rows = result.replay_rows
        stored.strategies = {
            **result.strategies,
            **{name: {**result.strategies.get(name, {}), **record} for name, record in records.items() if record},
        }
        stored.metrics = {
            "steps": result.steps,
            "final_loss": result.final_loss,
            "replay_fraction": result.replay_fraction,
            "tokens_seen": result.tokens_seen,
            "wall_seconds": result.wall_seconds,
        }
        return stored


def run_update(
    cfg: ClmConfig,
    *,
    trigger: dict[str, Any],
    plan: UpdatePlan,
    airflow_dag_id: str | None = None,
    airflow_run_id: str | None = None,
    actor: str | None = None,
) -> TrainingRun:
    """Train one continual update on ``plan`` and record it. Returns the stored run."""
    from clm_lib.training.recipe import train_update

    started = start_update(
        cfg, trigger=trigger, plan=plan, airflow_dag_id=airflow_dag_id, airflow_run_id=airflow_run_id
    )
    try:
        result = train_update(
            cfg,
            new_data=started.new,
            replay_data=started.replay,
            parent_adapter_dir=_parent_adapter(cfg, started.parent_version),
            output_dir=started.output_dir,
            run_id=started.run_id,
            strategies=started.strategies,
        )
        fault_point("train.after_adapter_saved")
        records = after_update(started, result)
    except Exception as exc:
        fail_update(cfg, started.run_id, exc)
        raise
    fault_point("train.before_succeeded")  # adapter saved, strategies' state written back
    return succeed_update(cfg, started.run_id, result, records)
