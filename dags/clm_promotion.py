"""clm_promotion: gate a candidate against the champion; move ``champion`` only if no task regressed.

Scheduled on the ``clm_candidate`` Asset. Manual: ``airflow dags trigger clm_promotion -c '{"version": "3"}'``.
"""

from datetime import datetime

from airflow.sdk import DAG, Param

from clm_lib.airflow.assets import CANDIDATE
from clm_lib.airflow.operators.promotion import PromoteOperator

with DAG(
    dag_id="clm_promotion",
    schedule=[CANDIDATE],
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["clm"],
    doc_md=__doc__,
    params={"version": Param(None, type=["null", "string"], description="Model version (default: from the event)")},
):
    PromoteOperator(task_id="gate_and_promote")
