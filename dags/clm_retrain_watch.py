"""clm_retrain_watch: the sensor path from drift to training (paused until you switch it on).

``wait`` defers to the triggerer until a drift check requests a retraining that no training run took up, then
``train`` starts ``clm_continual_training`` with that request's ``drift_check_id`` and waits for it. Use it when
drift checks run outside ``clm_drift_monitor`` (``clm drift check`` from cron, another system); with the default
Asset path on, both would start a training for the same request, so switch on one of the two.
"""

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator

from clm_lib.airflow.dag import clm_dag
from clm_lib.airflow.sensors.retrain import RetrainTriggerSensor

with clm_dag(
    dag_id="clm_retrain_watch",
    schedule="@continuous",
    is_paused_upon_creation=True,
    doc_md=__doc__,
):
    wait = RetrainTriggerSensor(task_id="wait", poke_interval=30)
    train = TriggerDagRunOperator(
        task_id="train",
        trigger_dag_id="clm_continual_training",
        conf={
            "drift_check_id": "{{ ti.xcom_pull(task_ids='wait')['check_id'] }}",
            "reason": "drift check {{ ti.xcom_pull(task_ids='wait')['check_id'] }} requested a retraining",
        },
        wait_for_completion=True,
        deferrable=True,
        poke_interval=30,
    )
    wait >> train
