"""clm_continual_training: a retrain request -> a continual update -> every task evaluated -> a candidate.

Scheduled on the ``clm_retrain_request`` Asset, which ``clm_drift_monitor`` emits when drift or volume call for a
retraining; the run records that decision (and links it to the drift reports). Manual runs train when the drift
policy's volume rule finds enough new rows (``drift.volume.min_new_rows``), or with force:
``airflow dags trigger clm_continual_training -c '{"force": true, "reason": "hotfix data"}'``. With
``{"remove_task": "billing", ...}`` (the Multi-task screen) nothing is trained: the champion without that task's
adapter is the candidate.
Whatever started it, the candidate then goes through ``clm_promotion`` (gate, canary, bake) and becomes champion
when it passes, with no person asked.

``train`` and ``register`` retry once: a retry resumes the killed try's checkpoint on the same inputs and finds a
version already registered for the run (docs/reliability.md), so a lost worker costs minutes, not a run.

With ``training.placement: kubernetes`` the update trains in a pod: ``prepare`` (decide, write the training spec)
→ ``train`` (the pod, ``clm train --spec``) → ``collect`` (record the run), then evaluate and register as above
(docs/production.md).
"""

from datetime import timedelta

from airflow.sdk import Param

from clm_lib.airflow.assets import RETRAIN_REQUEST
from clm_lib.airflow.dag import clm_dag
from clm_lib.airflow.operators.evaluation import EvaluateOperator
from clm_lib.airflow.operators.registry import RegisterOperator
from clm_lib.airflow.operators.training import ContinualTrainOperator
from clm_lib.airflow.operators.training_pod import dag_training_config, pod_training

TRAINING = dag_training_config()  # which tasks the DAG has is fixed when it is parsed

with clm_dag(
    dag_id="clm_continual_training",
    schedule=[RETRAIN_REQUEST],
    doc_md=__doc__,
    params={
        "force": Param(
            False,
            type="boolean",
            description="Train even below drift.volume.min_new_rows. The candidate is promoted automatically when "
            "it passes the gate and the canary.",
        ),
        "reason": Param("", type="string", description="Why you trigger it (kept with the run)"),
        "remove_task": Param(
            "",
            type="string",
            description="Instead of training: the champion without this task's adapter becomes "
            "the candidate (set by the Multi-task screen; the gate still decides).",
        ),
        "drift_check_id": Param(
            "", type="string", description="The drift check that requested this run (set by clm_retrain_watch)"
        ),
    },
):
    retry = {"retries": 1, "retry_delay": timedelta(seconds=30)}
    if TRAINING.placement == "kubernetes":
        train = pod_training(TRAINING, **retry)  # prepare >> train (pod) >> collect
    else:
        train = ContinualTrainOperator(task_id="train", **retry)
    evaluate = EvaluateOperator(task_id="evaluate", training_run_id=train.output)
    register = RegisterOperator(task_id="register", training_run_id=train.output, **retry)
    train >> evaluate >> register
