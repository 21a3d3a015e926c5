"""Training runs whose process died: marked ``interrupted``, and their checkpoints resumed by the retry.

``run_update`` writes a ``running`` row before it trains and ``succeeded`` or ``failed`` after; a process killed in
between (the OOM killer, a lost node, SIGKILL) never makes the second write, so its row would say ``running``
forever. :func:`reclaim_interrupted` runs at the start of every update, before its own row is written:

1. it claims the new run's output folder: ``owner.json`` there names the host, the pid and the pid's start time;
2. every ``running`` row whose process is gone becomes ``interrupted``, with why in ``error``. Gone means: the row
   belongs to the same Airflow task run (DAG id and run id) as this update (Airflow runs one try of a task at a time,
   so a retry means the earlier try ended); or its owner is on this host and that pid no longer runs, or is another
   process now; or, owned elsewhere, nothing in its output folder changed for :data:`STALE_AFTER`;
3. when the newest interrupted run of the same Airflow task left a checkpoint and read exactly what this run reads
   (settings, curated versions, parent model, replay buffer version), its ``checkpoints/`` folder moves into this
   run's output folder, so the recipe resumes from it (:mod:`clm_lib.training.loop`) instead of starting over.
   Inputs that differ would make the checkpoint refuse to load, so those runs start over, and the log says why.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from datetime import UTC, timedelta
from pathlib import Path

import psutil
from sqlalchemy import select

from clm_lib.config import ClmConfig
from clm_lib.db import session_scope
from clm_lib.db.models import TrainingRun, utcnow
from clm_lib.services.process_identity import is_same, start_mark

log = logging.getLogger(__name__)

OWNER_FILE = "owner.json"
STALE_AFTER = timedelta(hours=24)
"""A run owned by another host is presumed dead after this long without a write to its output folder (checkpoints
are its heartbeat)."""
INTERRUPTED = "interrupted"


def reclaim_interrupted(cfg: ClmConfig, run: TrainingRun) -> Path | None:
    """Before ``run`` (built, not yet stored) trains: claim its output folder, mark dead ``running`` rows
    ``interrupted`` and move in the checkpoints of the one this same Airflow task left. Returns the checkpoint
    folder moved in, or None."""
    out = Path(run.output_dir or cfg.models_dir / "runs" / run.id)
    out.mkdir(parents=True, exist_ok=True)
    _claim(out)
    same_task: list[tuple[str, Path, TrainingRun]] = []
    with session_scope(cfg.database_url) as s:
        for row in s.scalars(select(TrainingRun).where(TrainingRun.status.in_(("running", INTERRUPTED)))):
            if row.id == run.id:
                continue
            mine = run.airflow_run_id is not None and (row.airflow_dag_id, row.airflow_run_id) == (
                run.airflow_dag_id,
                run.airflow_run_id,
            )
            if row.status == "running":
                why = _gone(row, mine)
                if why is None:
                    continue
                row.status, row.error, row.finished_at = INTERRUPTED, f"interrupted: {why}", utcnow()
                log.warning("training run %s was interrupted: %s", row.id, why)
            if mine and row.output_dir:
                same_task.append((row.id, Path(row.output_dir) / "checkpoints", row))
    from clm_lib.training.loop import latest_checkpoint

    for row_id, checkpoints, row in sorted(same_task, key=lambda t: t[2].started_at, reverse=True):
        latest = latest_checkpoint(checkpoints)
        if latest is None:
            continue
        differs = _differs(cfg, row, run)
        if differs:
            log.warning("not resuming the checkpoint of %s: %s; training from the start", row_id, differs)
            return None
        os.replace(checkpoints, out / "checkpoints")
        with session_scope(cfg.database_url) as s:
            stored = s.get(TrainingRun, row_id)
            stored.error = f"{stored.error or 'interrupted'}; its checkpoint {latest.name} resumed by {run.id}"
        log.info("training run %s resumes %s's checkpoint %s", run.id, row_id, latest.name)
        return out / "checkpoints"
    return None


def earlier_try_versions(
    cfg: ClmConfig, airflow_dag_id: str | None, airflow_run_id: str | None
) -> dict[str, int | None]:
    """The Delta versions the newest unfinished try of this same Airflow task read (``{"replay": v}``), so a retry
    trains on the same inputs, or ``{}`` when there was none (or the run is not an Airflow task)."""
    if airflow_run_id is None:
        return {}
    with session_scope(cfg.database_url) as s:
        row = s.scalars(
            select(TrainingRun)
            .where(
                TrainingRun.airflow_dag_id == airflow_dag_id,
                TrainingRun.airflow_run_id == airflow_run_id,
                TrainingRun.status.in_(("running", INTERRUPTED)),
            )
            .order_by(TrainingRun.started_at.desc())
        ).first()
        return {} if row is None else {"replay": row.replay_version}


def _claim(out: Path) -> None:
    me = os.getpid()
    owner = {"host": socket.gethostname(), "pid": me, "pid_mark": start_mark(me), "claimed": time.time()}
    (out / OWNER_FILE).write_text(json.dumps(owner))


def _gone(row: TrainingRun, same_task: bool) -> str | None:
    """Why ``row``'s process is known to be dead, or None when it may still be training."""
    if same_task:
        return f"a retry of the same Airflow task ({row.airflow_dag_id}, {row.airflow_run_id}) started"
    folder = Path(row.output_dir) if row.output_dir else None
    try:
        owner = json.loads((folder / OWNER_FILE).read_text()) if folder else None
    except (OSError, ValueError):
        owner = None
    if owner and owner.get("host") == socket.gethostname():
        pid = int(owner.get("pid", -1))
        try:
            proc = psutil.Process(pid)
            alive = proc.status() != psutil.STATUS_ZOMBIE and is_same(pid, owner["pid_mark"])
        except (psutil.Error, KeyError, TypeError, ValueError):
            alive = False
        return None if alive else f"its process {pid} on {owner['host']} is gone"
    started = row.started_at
    last = (started if started.tzinfo else started.replace(tzinfo=UTC)).timestamp()
    if folder and folder.is_dir():
        last = max([last, *(p.stat().st_mtime for p in folder.rglob("*") if p.exists())])
    idle = time.time() - last
    if idle > STALE_AFTER.total_seconds():
        where = f"on {owner['host']} " if owner and owner.get("host") else ""
        return f"no sign of life {where}for {timedelta(seconds=int(idle))} (more than {STALE_AFTER})"
    return None


def _differs(cfg: ClmConfig, old: TrainingRun, new: TrainingRun) -> str | None:
    """What ``new`` reads that ``old`` did not (a checkpoint only loads into a run on the same inputs)."""
    for field in ("config_hash", "base_model", "curated_version", "previous_curated_version", "replay_version"):
        if getattr(old, field) != getattr(new, field):
            return f"{field} was {getattr(old, field)!r}, now {getattr(new, field)!r}"
    if old.parent_model_version != new.parent_model_version:
        return f"the parent model was {old.parent_model_version!r}, now {new.parent_model_version!r}"
    if new.parent_model_version is not None:
        with session_scope(cfg.database_url) as s:
            parent = s.scalars(select(TrainingRun).where(TrainingRun.model_version == new.parent_model_version)).first()
            local = parent is not None and parent.output_dir and (Path(parent.output_dir) / "adapter").is_dir()
        if not local:
            # The parent adapter is downloaded from MLflow into a new folder, and checkpoints record its path.
            return "the parent adapter is fetched from MLflow again, into another folder"
    return None
