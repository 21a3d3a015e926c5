"""clm_ingest: files in the landing folder -> raw / curated / quarantine Delta tables.

Emits the ``clm_curated`` Asset event (with row counts) when new rows were curated; that event
schedules ``clm_drift_monitor``, whose retrain request in turn schedules ``clm_continual_training``.
"""

from datetime import timedelta

from clm_lib.airflow.dag import clm_dag
from clm_lib.airflow.operators.ingest import IngestOperator

with clm_dag(
    dag_id="clm_ingest",
    schedule=timedelta(minutes=5),
    doc_md=__doc__,
):
    IngestOperator(task_id="ingest", retries=1, retry_delay=timedelta(seconds=10))
