"""clm_drift_monitor: is the new data (or the champion's performance on it) different enough to retrain?

Runs when new curated data lands (``clm_curated``) and hourly. Every detector's verdict goes to clm's
``drift_reports`` table (the Drift screen plots them); when the retraining policy fires, the ``check`` task emits
a ``clm_retrain_request`` Asset event carrying the reasons, and that event starts ``clm_continual_training``.
Otherwise the task skips with the policy's reason. Detectors, thresholds and cooldowns: ``drift`` in clm.yaml.
"""

from datetime import datetime, timedelta

from airflow.sdk import DAG
from airflow.timetables.assets import AssetOrTimeSchedule
from airflow.timetables.trigger import CronTriggerTimetable

from clm_lib.airflow.assets import CURATED
from clm_lib.airflow.callbacks import dag_failed
from clm_lib.airflow.operators.drift import DriftCheckOperator

with DAG(
    dag_id="clm_drift_monitor",
    schedule=AssetOrTimeSchedule(timetable=CronTriggerTimetable("17 * * * *", timezone="UTC"), assets=[CURATED]),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["clm"],
    doc_md=__doc__,
    on_failure_callback=dag_failed,  # a failed run is an alert (clm_lib/alerts)
):
    DriftCheckOperator(task_id="check", retries=1, retry_delay=timedelta(seconds=30))
