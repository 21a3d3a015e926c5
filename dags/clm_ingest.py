"""clm_ingest: files in the landing folder -> raw / curated / quarantine Delta tables.

Emits the ``clm_curated`` Asset event (with row counts) when new rows were curated; that event
schedules ``clm_drift_monitor``, whose retrain request in turn schedules ``clm_continual_training``.
"""

from datetime import datetime, timedelta

from airflow.sdk import DAG

from clm_lib.airflow.callbacks import dag_failed
from clm_lib.airflow.operators.ingest import IngestOperator

with DAG(
    dag_id="clm_ingest",
    schedule=timedelta(minutes=5),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["clm"],
    doc_md=__doc__,
    on_failure_callback=dag_failed,  # a failed run is an alert (clm_lib/alerts)
):
    IngestOperator(task_id="ingest", retries=1, retry_delay=timedelta(seconds=10))
