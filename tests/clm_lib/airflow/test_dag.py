"""clm's DAG defaults, and every shipped DAG built with them."""

from __future__ import annotations

from pathlib import Path

from clm_lib.airflow.callbacks import dag_failed
from clm_lib.airflow.dag import START, clm_dag

DAGS = Path(__file__).resolve().parents[3] / "dags"


def test_the_defaults_and_an_override():
    dag = clm_dag("t", schedule=None, doc_md="doc")
    assert (dag.start_date.replace(tzinfo=None), dag.catchup, dag.max_active_runs) == (START, False, 1)
    assert dag.tags == {"clm"} and dag.on_failure_callback == dag_failed and dag.doc_md == "doc"
    assert clm_dag("u", schedule=None, doc_md=None, max_active_runs=3, tags=["x"]).max_active_runs == 3


def test_every_shipped_dag_is_a_clm_dag():
    files = sorted(DAGS.glob("*.py"))
    assert len(files) == 10
    for path in files:
        text = path.read_text()
        assert "with clm_dag(" in text and "with DAG(" not in text, path.name
