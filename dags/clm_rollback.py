"""clm_rollback: put the previous champion (or a named version) back on all traffic, and make it champion.

The same function as ``clm rollback`` and ``POST /clm/api/rollback``: a weight flip to the warm slot when the
version is still loaded, else load it into the idle slot first. A promotion under way is ended first.
``airflow dags trigger clm_rollback -c '{"reason": "latency spike"}'`` or ``-c '{"to_version": "3", "reason": "..."}'``.
"""

from airflow.sdk import Param

from clm_lib.airflow.dag import clm_dag
from clm_lib.airflow.operators.rollback import RollbackOperator

with clm_dag(
    dag_id="clm_rollback",
    schedule=None,
    doc_md=__doc__,
    default_args={"retries": 0},
    params={
        "to_version": Param(None, type=["null", "string"], description="Version to roll back to (default: previous)"),
        "reason": Param("", type="string", description="Why (kept in the audit log)"),
    },
):
    RollbackOperator(task_id="rollback")
