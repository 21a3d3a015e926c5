"""clm_drift_monitor: is the new data (or the champion's performance on it) different enough to retrain?

Runs when new curated data lands (``clm_curated``) and hourly. Every detector's verdict goes to clm's
``drift_reports`` table (the Drift screen plots them); when the retraining policy fires, the ``check`` task emits
a ``clm_retrain_request`` Asset event carrying the reasons, and that event starts ``clm_continual_training``.
Otherwise the task skips with the policy's reason. Detectors, thresholds and cooldowns: ``drift`` in clm.yaml.
"""

from datetime import timedelta

from airflow.timetables.assets import AssetOrTimeSchedule
from airflow.timetables.trigger import CronTriggerTimetable

from clm_lib.airflow.assets import CURATED
from clm_lib.airflow.dag import clm_dag
from clm_lib.airflow.operators.drift import DriftCheckOperator

with clm_dag(
    dag_id="clm_drift_monitor",
    schedule=AssetOrTimeSchedule(timetable=CronTriggerTimetable("17 * * * *", timezone="UTC"), assets=[CURATED]),
    doc_md=__doc__,
):
    DriftCheckOperator(task_id="check", retries=1, retry_delay=timedelta(seconds=30))
