"""clm_lake_maintenance: once a day, compact each lake table's small files, then vacuum old ones.

Vacuum keeps ``lake.vacuum_retention_hours`` of history, and always the versions a registered or deployed model
was trained on (``clm_lib/data/maintenance.py``). The same functions as ``clm data optimize`` / ``clm data vacuum``.
"""

from datetime import timedelta

from clm_lib.airflow.dag import clm_dag
from clm_lib.airflow.operators.maintenance import LAKE_TABLES, LakeMaintenanceOperator

with clm_dag(
    dag_id="clm_lake_maintenance",
    schedule="@daily",
    doc_md=__doc__,
    default_args={"retries": 1, "retry_delay": timedelta(minutes=5)},
):
    previous = None
    for table in LAKE_TABLES:
        # One after the other: compaction rewrites files and a small machine should not do it in parallel. A table
        # that fails does not hold the others back (all_done); the run still fails, which raises an alert.
        task = LakeMaintenanceOperator(task_id=f"maintain_{table}", table=table, trigger_rule="all_done")
        if previous is not None:
            previous >> task
        previous = task
