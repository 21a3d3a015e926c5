"""The demo's story: drops arrive one at a time and Airflow does the rest.

This module only drops files and watches: each drop is copied into the landing folder and
``clm_ingest`` is triggered through Airflow's REST API; the Asset events then start
``clm_drift_monitor``, which decides whether the drop calls for a retraining, and from there
``clm_continual_training`` and ``clm_promotion`` inside Airflow. After each drop it reads the
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
from clm_lib.data.landing_s3 import deliver, staging_dir
from clm_lib.db import session_scope
from clm_lib.db.models import DriftReport, Evaluation, GateDecision, IngestionBatch, TrainingRun
from clm_lib.errors import ClmError
from clm_lib.services.airflow_client import AirflowClient

DAGS = ("clm_ingest", "clm_drift_monitor", "clm_continual_training", "clm_promotion")


@dataclass
class UpdateRow:
    drop: str
    curated: int
    quarantined: int
    duplicates: int
    drift: str = "-"
    """The drift check's verdict: the detectors that requested a retraining, or ``no retrain``."""
    version: str | None = None
    tasks: int = 0
    replay_rows: int = 0
    average_accuracy: float | None = None
    backward_transfer: float | None = None
    gate: str = "-"
    seconds: float = 0.0


HEADER = (
    f"{'drop':<26} {'cur':>5} {'quar':>4} {'dup':>4} {'drift check':<44} {'ver':>4} {'tasks':>5} {'replay':>6} "
    f"{'AA':>6} {'BWT':>7}  gate"
)


def format_row(r: UpdateRow) -> str:
    aa = "-" if r.average_accuracy is None else f"{r.average_accuracy:.1f}"
    bwt = "-" if r.backward_transfer is None else f"{r.backward_transfer:+.1f}"
    return (
        f"{r.drop:<26} {r.curated:>5} {r.quarantined:>4} {r.duplicates:>4} {r.drift:<44} {r.version or '-':>4} "
        f"{r.tasks:>5} "
        f"{r.replay_rows:>6} {aa:>6} {bwt:>7}  {r.gate}"
    )


def _drift_verdict(cfg: ClmConfig, requested: bool, training_dag_run_id: str | None) -> str:
    """The drift check's verdict in one cell: who requested the training this drop started, or nobody.

    Read from the reports linked to the training run, not from the newest check: the hourly check of
    ``clm_drift_monitor`` may run in between and is not this drop's.
    """
    if not requested:
        return "no retrain"
    with session_scope(cfg.database_url) as s:
        run = s.scalars(select(TrainingRun).where(TrainingRun.airflow_run_id == training_dag_run_id)).first()
        rows = s.scalars(select(DriftReport).where(DriftReport.training_run_id == run.id)).all() if run else []
    fired = list(dict.fromkeys(r.detector for r in rows))
    if fired == ["volume"] and any("no model trained yet" in r.explanation for r in rows):
        return "first data"
    return "retrain: " + (", ".join(fired) or "(no linked report)")


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
            row.gate = promotion_cell(s, run.model_version)
    return row


def promotion_cell(session, version: str) -> str:
    """How far ``version`` got: rejected by the gate, promoted through serving, or rolled back (and why)."""
    from clm_lib.deploy.history import latest_promotion

    gate = session.scalars(
        select(GateDecision).where(GateDecision.model_version == version).order_by(GateDecision.id.desc())
    ).first()
    if gate is not None and not gate.passed:
        return "rejected: " + "; ".join(r for r in gate.reasons if "REGRESSED" in r or "TOO LOW" in r)
    deployment = latest_promotion(session, version)
    if deployment is None:
        return "promoted -> champion" if gate is not None else "-"
    if deployment.status == "promoted":
        return f"promoted -> champion ({deployment.strategy})"
    return f"{deployment.status.replace('_', ' ')}: {deployment.outcome}"


def already_ran(cfg: ClmConfig) -> bool:
    """True when this home has ingested data: the demo's drops would all be duplicates."""
    from sqlalchemy import inspect

    from clm_lib.db import get_engine

    if not inspect(get_engine(cfg.database_url)).has_table(IngestionBatch.__tablename__):
        return False
    with session_scope(cfg.database_url) as s:
        return s.scalars(select(IngestionBatch.id).limit(1)).first() is not None


def _deliver(cfg: ClmConfig, drop: Path) -> None:
    """Put a copy of a drop where the ingest DAG looks, whole (the landing folder or its ``s3://`` location)."""
    staging = staging_dir(cfg)
    staging.mkdir(parents=True, exist_ok=True)
    copy = staging / f".{drop.name}.part"  # hidden: an ingest running meanwhile skips it until it is whole
    shutil.copy(drop, copy)
    deliver(cfg, copy, drop.name)


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
    rows: list[UpdateRow] = []
    echo(HEADER)
    for drop in drops:
        started = time.monotonic()
        known_checks = {r["dag_run_id"] for r in client.runs("clm_drift_monitor", limit=100)}
        known_training = {r["dag_run_id"] for r in client.runs("clm_continual_training", limit=100)}
        known_promotion = {r["dag_run_id"] for r in client.runs("clm_promotion", limit=100)}
        _deliver(cfg, drop)
        ingest_id = client.trigger("clm_ingest", {"reason": f"demo drop {drop.name}"})
        ingest = client.wait_for_run("clm_ingest", ingest_id, timeout=180)
        if ingest["state"] != "success":
            raise ClmError(f"clm_ingest run {ingest_id} {ingest['state']}; see the task log in the Airflow UI")
        # The check this drop's curated data started, not the hourly one that may run meanwhile.
        check = client.wait_for_new_run("clm_drift_monitor", known_checks, timeout=60, run_type="asset_triggered")
        if check is None:
            raise ClmError("clm_drift_monitor did not start after new data was curated")
        check = client.wait_for_run("clm_drift_monitor", check["dag_run_id"], timeout=300)
        if check["state"] != "success":
            raise ClmError(f"clm_drift_monitor run {check['dag_run_id']} {check['state']}; see its task log")
        requested = client.task_states("clm_drift_monitor", check["dag_run_id"]).get("check") == "success"
        training = client.wait_for_new_run("clm_continual_training", known_training, timeout=60) if requested else None
        if requested and training is None:
            raise ClmError("clm_continual_training did not start after the drift check requested a retraining")
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
                # A promotion that a safety rule rolled back ends failed: the table says why, the demo goes on.
                client.wait_for_run("clm_promotion", promotion["dag_run_id"], timeout=600)
        verdict = _drift_verdict(cfg, requested, training_id)
        row = _outcome(cfg, UpdateRow(drop.name, 0, 0, 0, drift=verdict), training_id)
        row.seconds = time.monotonic() - started
        rows.append(row)
        echo(format_row(row) + f"   ({row.seconds:.0f}s)")
    return rows
