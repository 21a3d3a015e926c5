"""A removal run: the champion's per-task adapters without one task, as a new candidate (nothing is trained).

An operator asks for it on the Multi-task screen (``clm_continual_training`` with ``{"remove_task": ...}``). The
registered champion is never changed: its adapter folder is copied into this run's output, the task's adapter is
taken out and the router refitted without it (:func:`clm_lib.training.adapters.remove_task_adapter`), which scores
the remaining tasks before and after on their held-out sets. The run is then an ordinary succeeded training run
whose parent is the champion: evaluated, registered with its lineage (its trigger names the removed task) and gated
by ``clm_promotion`` like any candidate, so nothing reaches traffic without the gate.

The removed task's records also leave the replay buffer (a new version of the Delta ``replay`` table), so its share
of replay goes to the tasks that stay; the report is kept in the run (``strategies["task_removal"]``,
``removal_report.json``) and reaches MLflow with the run's parameters and metrics at registration.
"""

from __future__ import annotations

import json
import logging
import shutil
import uuid
from dataclasses import asdict
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import select

from clm_lib.config import ClmConfig
from clm_lib.db import session_scope
from clm_lib.db.models import ConfigVersion, TrainingRun, utcnow
from clm_lib.errors import TrainingError

log = logging.getLogger(__name__)

REPORT_FILE = "removal_report.json"


def _drop_from_buffer(cfg: ClmConfig, task: str) -> dict[str, Any]:
    """The replay buffer without ``task``'s records, written as a new version when it held any."""
    from clm_lib.data import lake
    from clm_lib.training.strategies.replay import BUFFER_TABLE

    version = lake.table_version(cfg, BUFFER_TABLE)
    if version is None:
        return {"buffer_version": None, "buffer_tasks_after": {}}
    buffer = lake.read_table(cfg, BUFFER_TABLE, version=version)
    kept = buffer.filter(pc.invert(pc.equal(buffer.column("task"), pa.scalar(task))))
    after: dict[str, int] = {}
    for t in kept.column("task").to_pylist():
        after[t] = after.get(t, 0) + 1
    record = {
        "buffer_version": version,
        "buffer_tasks_after": after,
        "removed_records": buffer.num_rows - kept.num_rows,
    }
    if kept.num_rows != buffer.num_rows:
        record["buffer_version_written"] = lake.overwrite(cfg, BUFFER_TABLE, kept)
    return record


def run_removal(
    cfg: ClmConfig,
    task: str,
    *,
    trigger: dict[str, Any],
    airflow_dag_id: str | None = None,
    airflow_run_id: str | None = None,
) -> TrainingRun:
    """Make the candidate "champion without ``task``" and record it as a succeeded training run."""
    from clm_lib.data.ingest import held_out
    from clm_lib.modeling.build import ensure_base_model
    from clm_lib.registry.aliases import CHAMPION
    from clm_lib.registry.mlflow_registry import alias_version
    from clm_lib.training.adapters import remove_task_adapter
    from clm_lib.training.update import _parent_adapter

    champion = alias_version(cfg, CHAMPION)
    if champion is None:
        raise TrainingError(f"cannot remove {task!r}: there is no champion to remove it from")
    with session_scope(cfg.database_url) as s:
        parent = s.scalars(select(TrainingRun).where(TrainingRun.model_version == champion)).first()
        if parent is None:
            raise TrainingError(f"clm's database has no training run for the champion, version {champion}")
        parent_tasks, curated = list(parent.tasks or []), parent.curated_version
    remaining = [t for t in parent_tasks if t != task]
    run_id = f"run-{utcnow():%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
    output_dir = cfg.models_dir / "runs" / run_id
    base = ensure_base_model(cfg)
    run = TrainingRun(
        id=run_id,
        status="running",
        trigger={**trigger, "remove_task": task},
        airflow_dag_id=airflow_dag_id,
        airflow_run_id=airflow_run_id,
        parent_model_version=champion,
        base_model=str(base),
        config_hash=cfg.config_hash(),
        config_revision=cfg.revision,
        curated_version=curated,
        previous_curated_version=curated,  # no new data is read: the next update continues from the champion's
        new_rows=0,
        tasks=remaining,
        output_dir=str(output_dir),
    )
    with session_scope(cfg.database_url) as s:
        if s.get(ConfigVersion, run.config_hash) is None:
            s.add(ConfigVersion(config_hash=run.config_hash, content=cfg.model_dump(mode="json")))
        s.add(run)
    log.info("removal run %s: %s out of version %s", run_id, task, champion)
    try:
        adapter = output_dir / "adapter"
        output_dir.mkdir(parents=True, exist_ok=True)
        shutil.copytree(_parent_adapter(cfg, champion), adapter)
        report = remove_task_adapter(
            adapter,
            task,
            base_dir=base,
            eval_data=held_out(cfg, remaining),
            max_examples_per_task=cfg.evaluation.max_examples_per_task,
            batch_size=cfg.evaluation.batch_size,
            max_length=cfg.model.max_length,
        )
        replay = _drop_from_buffer(cfg, task) if cfg.training.replay.enabled else {}
    except Exception as exc:
        with session_scope(cfg.database_url) as s:
            stored = s.get(TrainingRun, run_id)
            stored.status, stored.error, stored.finished_at = "failed", str(exc)[:4000], utcnow()
        raise
    record = {**asdict(report), "change": report.change, "parent_version": champion}
    (output_dir / REPORT_FILE).write_text(json.dumps(record, indent=2))
    metrics: dict[str, Any] = {"steps": 0}
    metrics.update({f"removal_before.{t}": v for t, v in report.before.items()})
    metrics.update({f"removal_after.{t}": v for t, v in report.after.items()})
    if report.router_accuracy is not None:
        metrics["removal_router_accuracy"] = report.router_accuracy
    with session_scope(cfg.database_url) as s:
        stored = s.get(TrainingRun, run_id)
        stored.status, stored.finished_at = "succeeded", utcnow()
        stored.replay_version = replay.get("buffer_version")
        stored.strategies = {"task_removal": record, **({"replay": replay} if replay else {})}
        stored.metrics = metrics
        s.flush()
        s.expunge(stored)
    log.info("removal run %s: %s removed; remaining before %s after %s", run_id, task, report.before, report.after)
    return stored
