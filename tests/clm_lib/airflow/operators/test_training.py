"""ContinualTrainOperator on a real lake, database, MLflow and the tiny model: a manual run asks the drift policy's
volume rule and skips with its reason; a forced run trains and records why."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pyarrow as pa
import pytest
from airflow.sdk.exceptions import AirflowSkipException
from sqlalchemy import select

from clm_lib.airflow.operators.training import ContinualTrainOperator
from clm_lib.config import load_config
from clm_lib.data import lake
from clm_lib.db import session_scope
from clm_lib.db.models import TrainingRun
from clm_lib.demo.stream import generate_task

TINY = Path(__file__).resolve().parents[4] / "include" / "tiny.yaml"


@pytest.fixture
def op_cfg(tmp_path, tiny_base, sqlite_url, mlflow_uri, monkeypatch):
    """The environment an Airflow worker would have: tiny.yaml, a temp home, clm's DB and MLflow."""
    for key, value in {
        "CLM_CONFIG": str(TINY),
        "CLM_HOME": str(tmp_path / "home"),
        "CLM_DATABASE_URL": sqlite_url,
        "MLFLOW_TRACKING_URI": mlflow_uri,
        "CLM__MODEL__BASE_PATH": str(tiny_base),
        "CLM__TRAINING__MAX_STEPS": "6",
        "CLM__TRAINING__CHECKPOINT_EVERY": "6",
    }.items():
        monkeypatch.setenv(key, value)
    return load_config()


def _curated(n: int) -> pa.Table:
    now = datetime.now(UTC)
    return pa.Table.from_pylist([
        {**r, "id": f"r{i}", "split": "train", "source": "t", "batch_id": "b", "line": i, "ingested_at": now,
         "metadata": "{}"}
        for i, r in enumerate(generate_task("routers", n, 1))
    ])  # fmt: skip


def _context(**params) -> dict:
    return {
        "params": {"force": False, "reason": "", "drift_check_id": "", **params},
        "dag": SimpleNamespace(dag_id="clm_continual_training"),
        "run_id": "manual__1",
        "dag_run": SimpleNamespace(run_type="manual", triggering_user_name="alice"),
    }


def _runs(cfg) -> list[TrainingRun]:
    with session_scope(cfg.database_url) as s:
        return list(s.scalars(select(TrainingRun)))


def test_a_manual_run_skips_with_the_drift_policys_reason(op_cfg):
    op = ContinualTrainOperator(task_id="train", force="False", remove_task="")  # as Jinja renders {{ params.force }}
    with pytest.raises(AirflowSkipException, match="no curated data yet"):
        op.execute(_context())
    lake.append(op_cfg, "curated", _curated(40))
    with pytest.raises(AirflowSkipException) as skipped:
        op.execute(_context())
    # The drift policy's volume rule said no: before the first training it needs drift.volume.initial_rows.
    assert str(skipped.value) == (
        f"40 new curated rows and no model trained yet, below the initial-training threshold of "
        f"{op_cfg.drift.volume.initial_rows}"
    )
    assert _runs(op_cfg) == []


@pytest.mark.slow
def test_a_forced_run_trains_below_the_threshold_and_records_why(op_cfg):
    lake.append(op_cfg, "curated", _curated(40))
    op = ContinualTrainOperator(task_id="train", force="True", remove_task="")

    run_id = op.execute(_context(force=True, reason="hotfix data"))

    (run,) = _runs(op_cfg)
    assert (run.id, run.status, run.new_rows, run.metrics["steps"]) == (run_id, "succeeded", 40, 6)
    assert run.trigger["kind"] == "manual" and run.trigger["reason"] == "hotfix data"
    assert run.trigger["plan"] == "forced, with 40 new curated rows"
    assert (run.airflow_dag_id, run.airflow_run_id) == ("clm_continual_training", "manual__1")
    # The replay strategy refilled its buffer with the new rows and its record is the run's.
    replay = run.strategies["replay"]
    assert replay["buffer_version"] is None and replay["buffer_version_written"] == lake.table_version(op_cfg, "replay")
    assert replay["buffer_tasks_after"] == {"routers": 40} == {"routers": lake.read_table(op_cfg, "replay").num_rows}
