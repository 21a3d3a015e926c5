"""clm_rollback: put the previous champion (or a named version) back on all traffic, and make it champion.

The same function as ``clm rollback`` and ``POST /clm/api/rollback``: a weight flip to the warm slot when the
version is still loaded, else load it into the idle slot first. A promotion under way is ended first.
``airflow dags trigger clm_rollback -c '{"reason": "latency spike"}'`` or ``-c '{"to_version": "3", "reason": "..."}'``.
"""

from datetime import datetime

from airflow.sdk import DAG, Param

from clm_lib.airflow.callbacks import dag_failed
from clm_lib.airflow.operators.rollback import RollbackOperator

with DAG(
    dag_id="clm_rollback",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["clm"],
    doc_md=__doc__,
    on_failure_callback=dag_failed,  # a failed run is an alert (clm_lib/alerts)
    default_args={"retries": 0},
    params={
        "to_version": Param(None, type=["null", "string"], description="Version to roll back to (default: previous)"),
        "reason": Param("", type="string", description="Why (kept in the audit log)"),
    },
):
    RollbackOperator(task_id="rollback")
