"""clm_promotion: gate → deploy to the idle slot → smoke test → canary steps with bake windows → promote.

Scheduled on the ``clm_candidate`` Asset. A breached safety rule during a bake window rolls the candidate back
automatically (its weight to 0; the champion never moved) and fails the ``canary`` task with the reason.
Strategy, steps, bake window and rules: ``deploy:`` in ``clm.yaml``. Every step is a deployment event in clm's
database. Manual: ``airflow dags trigger clm_promotion -c '{"version": "3", "reason": "hotfix"}'``.
"""

from datetime import datetime

from airflow.sdk import DAG, Param

from clm_lib.airflow.assets import CANDIDATE
from clm_lib.airflow.callbacks import settle_deployment
from clm_lib.airflow.operators.promotion import CanaryOperator, DeployOperator, GateOperator, PromoteOperator

with DAG(
    dag_id="clm_promotion",
    schedule=[CANDIDATE],
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["clm"],
    doc_md=__doc__,
    # Each step records its outcome and ends the deployment when it fails; a retry would find it ended. A task
    # killed mid-step ends nothing: its failure callback has the reconciler end the deployment (docs/deploy.md).
    default_args={"retries": 0, "on_failure_callback": settle_deployment},
    params={
        "version": Param(None, type=["null", "string"], description="Model version (default: from the event)"),
        "reason": Param("", type="string", description="Why you promote it (kept with the deployment)"),
    },
):
    gate = GateOperator(task_id="gate")
    deploy = DeployOperator(task_id="deploy", deployment_id=gate.output)
    canary = CanaryOperator(task_id="canary", deployment_id=gate.output)
    promote = PromoteOperator(task_id="promote", deployment_id=gate.output)
    gate >> deploy >> canary >> promote
