"""DriftCheckOperator on a real lake and database: the first data requests the first training, and the request
event carries the decision; the training operator reads the request back and links the run to it."""

from datetime import UTC, datetime

import pyarrow as pa
import pytest
from airflow.sdk.exceptions import AirflowSkipException

from clm_lib.airflow.assets import RETRAIN_REQUEST
from clm_lib.airflow.operators.drift import DriftCheckOperator, request_extra
from clm_lib.airflow.operators.training import describe_trigger
from clm_lib.data import lake
from clm_lib.db import session_scope
from clm_lib.db.models import DriftReport
from clm_lib.demo.stream import generate_task


class _TI:
    def __init__(self):
        self.pushed = {}

    def xcom_push(self, key, value):
        self.pushed[key] = value


class _Event:
    extra: dict = {}


def _context():
    return {"ti": _TI(), "outlet_events": {RETRAIN_REQUEST: _Event()}}


def _curated(n: int) -> pa.Table:
    now = datetime.now(UTC)
    return pa.Table.from_pylist([
        {**r, "id": f"r{i}", "split": "eval" if i % 10 == 0 else "train", "source": "t", "batch_id": "b", "line": i,
         "ingested_at": now, "metadata": "{}"}
        for i, r in enumerate(generate_task("routers", n, 1))
    ])


@pytest.fixture
def op_cfg(env_cfg, mlflow_uri, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
    env_cfg.registry.tracking_uri = mlflow_uri
    return env_cfg


def test_no_data_skips_with_the_reason_and_stores_the_reports(op_cfg):
    ctx = _context()
    with pytest.raises(AirflowSkipException, match="no retraining"):
        DriftCheckOperator(task_id="check").execute(ctx)
    decision = ctx["ti"].pushed["decision"]
    assert decision["retrain"] is False
    with session_scope(op_cfg.database_url) as s:
        assert s.query(DriftReport).filter_by(check_id=decision["check_id"]).count() == len(decision["results"])


def test_first_curated_rows_request_the_first_training(op_cfg):
    lake.append(op_cfg, "curated", _curated(300))  # 270 training rows >= volume.initial_rows (200)
    ctx = _context()
    decision = DriftCheckOperator(task_id="check").execute(ctx)
    assert decision["retrain"] and [r["detector"] for r in decision["reasons"]] == ["volume"]
    extra = ctx["outlet_events"][RETRAIN_REQUEST].extra
    assert extra == request_extra(decision) and "results" not in extra
    assert extra["new_rows"] == 270 and "no model trained yet" in extra["summary"]


def test_training_reads_the_drift_checks_that_requested_it():
    class Event:
        def __init__(self, extra):
            self.extra = extra

    context = {
        "params": {"reason": "", "drift_check_id": "c9"},
        "triggering_asset_events": {RETRAIN_REQUEST: [Event({"check_id": "c1", "summary": "retrain: task_mix"})]},
    }
    trigger = describe_trigger(context)
    assert trigger["kind"] == "asset" and trigger["events"][0]["summary"] == "retrain: task_mix"
    assert trigger["drift_checks"] == ["c1", "c9"]
    assert "drift_checks" not in describe_trigger({"params": {"force": True}})
