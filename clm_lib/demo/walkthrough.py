"""The demo's story: drops arrive one at a time and Airflow does the rest.

This module only drops files and watches: each drop is copied into the landing folder and
``clm_ingest`` is triggered through Airflow's REST API; the Asset events then start
``clm_continual_training`` and ``clm_promotion`` inside Airflow. After each update it reads the
outcome from clm's database and prints one row of the table.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from clm_lib.config import ClmConfig
from clm_lib.db import session_scope
from clm_lib.db.models import Evaluation, GateDecision, IngestionBatch, TrainingRun
from clm_lib.errors import ClmError
from clm_lib.services.airflow_client import AirflowClient

DAGS = ("clm_ingest", "clm_continual_training", "clm_promotion")


@dataclass
class UpdateRow:
    drop: str
    curated: int
    quarantined: int
    duplicates: int
    version: str | None = None
    tasks: int = 0
    replay_rows: int = 0
    average_accuracy: float | None = None
    backward_transfer: float | None = None
    gate: str = "-"
    seconds: float = 0.0


HEADER = (
    f"{'drop':<26} {'cur':>5} {'quar':>4} {'dup':>4} {'ver':>4} {'tasks':>5} {'replay':>6} {'AA':>6} {'BWT':>7}  gate"
)


def format_row(r: UpdateRow) -> str:
    aa = "-" if r.average_accuracy is None else f"{r.average_accuracy:.1f}"
    bwt = "-" if r.backward_transfer is None else f"{r.backward_transfer:+.1f}"
    return (
        f"{r.drop:<26} {r.curated:>5} {r.quarantined:>4} {r.duplicates:>4} {r.version or '-':>4} {r.tasks:>5} "
        f"{r.replay_rows:>6} {aa:>6} {bwt:>7}  {r.gate}"
    )


def _outcome(cfg: ClmConfig, row: UpdateRow, training_run_id: str | None) -> UpdateRow:
    with session_scope(cfg.database_url) as s:
        batch = s.scalars(select(IngestionBatch).order_by(IngestionBatch.started_at.desc())).first()
        if batch:
            row.curated, row.quarantined, row.duplicates = (
                batch.rows_curated,
                batch.rows_quarantined,
                batch.rows_duplicate,
            )
        if not training_run_id:
            return row
        run = s.scalars(select(TrainingRun).where(TrainingRun.airflow_run_id == training_run_id)).first()
        if run is None:
            return row
        row.version, row.tasks, row.replay_rows = run.model_version, len(run.tasks), run.replay_rows
        ev = s.scalars(select(Evaluation).where(Evaluation.training_run_id == run.id)).first()
        if ev:
            row.average_accuracy, row.backward_transfer = ev.average_accuracy, ev.backward_transfer
        if run.model_version:
            gate = s.scalars(select(GateDecision).where(GateDecision.model_version == run.model_version)).first()
            if gate:
                row.gate = (
                    "promoted -> champion"
                    if gate.passed
                    else "rejected: " + "; ".join(r for r in gate.reasons if "REGRESSED" in r or "TOO LOW" in r)
                )
    return row


def already_ran(cfg: ClmConfig) -> bool:
    """True when this home has ingested data: the demo's drops would all be duplicates."""
    from sqlalchemy import inspect

    from clm_lib.db import get_engine

    if not inspect(get_engine(cfg.database_url)).has_table(IngestionBatch.__tablename__):
        return False
    with session_scope(cfg.database_url) as s:
        return s.scalars(select(IngestionBatch.id).limit(1)).first() is not None


def run_walkthrough(
    cfg: ClmConfig,
    client: AirflowClient,
    drops: list[Path],
    *,
    echo: Callable[[str], None] = print,
    timeout_per_update: float = 600.0,
) -> list[UpdateRow]:
    for dag_id in DAGS:
        client.wait_for_dag(dag_id)
        client.unpause(dag_id)
    cfg.landing_dir.mkdir(parents=True, exist_ok=True)
    rows: list[UpdateRow] = []
    echo(HEADER)
    for drop in drops:
        started = time.monotonic()
        known_training = {r["dag_run_id"] for r in client.runs("clm_continual_training", limit=100)}
        known_promotion = {r["dag_run_id"] for r in client.runs("clm_promotion", limit=100)}
        shutil.copy(drop, cfg.landing_dir / drop.name)
        ingest_id = client.trigger("clm_ingest", {"reason": f"demo drop {drop.name}"})
        ingest = client.wait_for_run("clm_ingest", ingest_id, timeout=180)
        if ingest["state"] != "success":
            raise ClmError(f"clm_ingest run {ingest_id} {ingest['state']}; see the task log in the Airflow UI")
        training = client.wait_for_new_run("clm_continual_training", known_training, timeout=60)
        training_id = None
        if training:
            training_id = training["dag_run_id"]
            done = client.wait_for_run("clm_continual_training", training_id, timeout=timeout_per_update)
            if done["state"] != "success":
                raise ClmError(f"clm_continual_training run {training_id} failed; see its task logs in the UI")
            if client.task_states("clm_continual_training", training_id).get("register") == "success":
                promotion = client.wait_for_new_run("clm_promotion", known_promotion, timeout=60)
                if promotion is None:
                    raise ClmError("clm_promotion did not start after a candidate was registered")
                client.wait_for_run("clm_promotion", promotion["dag_run_id"], timeout=180)
        row = _outcome(cfg, UpdateRow(drop.name, 0, 0, 0), training_id)
        row.seconds = time.monotonic() - started
        rows.append(row)
        echo(format_row(row) + f"   ({row.seconds:.0f}s)")
    return rows
