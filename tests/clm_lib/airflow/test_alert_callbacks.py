"""A failed run of a clm DAG is an alert: one open alert per DAG, counted while it keeps failing; the callback
never raises, even when clm's database is down."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from airflow.sdk.exceptions import AirflowSkipException
from sqlalchemy import select

from clm_lib.airflow.callbacks import dag_failed
from clm_lib.db import session_scope
from clm_lib.db.models import Alert
from tests.clm_lib.airflow.operators.test_drift import op_cfg  # noqa: F401 - a fixture


def _context(dag_id: str, run_id: str, reason: str = "task_failure") -> dict:
    return {"dag_run": SimpleNamespace(dag_id=dag_id, run_id=run_id), "reason": reason}


def test_failed_runs_are_one_alert_per_dag(env_cfg, db_url):
    dag_failed(_context("clm_ingest", "scheduled__1"))
    dag_failed(_context("clm_ingest", "scheduled__2"))
    dag_failed(_context("clm_promotion", "manual__1"))
    with session_scope(db_url) as s:
        rows = s.scalars(select(Alert).order_by(Alert.id)).all()
    assert [(a.cause, a.count, a.severity) for a in rows] == [("dag_failed:clm_ingest", 2, "critical"),
                                                               ("dag_failed:clm_promotion", 1, "critical")]  # fmt: skip
    assert "scheduled__2" in rows[0].message and rows[0].links == [
        {"label": "DAG run", "href": "/dags/clm_ingest/runs/scheduled__2"}
    ]


def test_the_callback_never_raises(env_cfg, monkeypatch):
    monkeypatch.setenv("CLM_DATABASE_URL", "postgresql+psycopg2://clm:pw@127.0.0.1:9/clm")
    dag_failed(_context("clm_ingest", "scheduled__3"))  # logged, not raised
    dag_failed({})  # nothing Airflow would send, still no exception


def test_a_drift_check_that_requests_a_retraining_raises_one_alert(op_cfg):  # noqa: F811
    from clm_lib.airflow.operators.drift import DriftCheckOperator
    from clm_lib.data import lake
    from tests.clm_lib.airflow.operators.test_drift import _context, _curated

    with pytest.raises(AirflowSkipException):
        DriftCheckOperator(task_id="check").execute(_context())  # no data: no retraining, no alert
    with session_scope(op_cfg.database_url) as s:
        assert s.scalars(select(Alert)).all() == []
    lake.append(op_cfg, "curated", _curated(300))
    decision = DriftCheckOperator(task_id="check").execute(_context())
    with session_scope(op_cfg.database_url) as s:
        [a] = s.scalars(select(Alert)).all()
    assert (a.kind, a.severity) == ("drift_retrain", "warning") and decision["check_id"] in a.message
