"""clm_promotion: gate → approval → deploy to the idle slot → smoke test → canary steps with bake windows → promote.

Scheduled on the ``clm_candidate`` Asset. A breached safety rule during a bake window rolls the candidate back
automatically (its weight to 0; the champion never moved) and fails the ``canary`` task with the reason.
Strategy, steps, bake window and rules: ``deploy:`` in ``clm.yaml``. Every step is a deployment event in clm's
database. Manual: ``airflow dags trigger clm_promotion -c '{"version": "3", "reason": "hotfix"}'``.

``approval`` waits for a person to approve in Airflow's "Required actions" when ``deploy.require_approval`` is on
or the run's ``require_approval`` param is true (the param can ask for approval, never skip it); otherwise it
returns at once. A rejection or timeout ends the promotion ``rejected`` and skips the rest: no traffic moves.
"""

from airflow.sdk import Param

from clm_lib.airflow.assets import CANDIDATE
from clm_lib.airflow.callbacks import settle_deployment
from clm_lib.airflow.dag import clm_dag
from clm_lib.airflow.operators.approval import PromotionApprovalOperator
from clm_lib.airflow.operators.promotion import CanaryOperator, DeployOperator, GateOperator, PromoteOperator

ASK_APPROVAL = "Wait for a person's approval before deploying (false never turns deploy.require_approval off)"

with clm_dag(
    dag_id="clm_promotion",
    schedule=[CANDIDATE],
    doc_md=__doc__,
    # Each step records its outcome and ends the deployment when it fails; a retry would find it ended. A task
    # killed mid-step ends nothing: its failure callback has the reconciler end the deployment (docs/deploy.md).
    default_args={"retries": 0, "on_failure_callback": settle_deployment},
    params={
        "version": Param(None, type=["null", "string"], description="Model version (default: from the event)"),
        "reason": Param("", type="string", description="Why you promote it (kept with the deployment)"),
        "require_approval": Param(False, type="boolean", description=ASK_APPROVAL),
    },
):
    gate = GateOperator(task_id="gate")
    approval = PromotionApprovalOperator(task_id="approval", deployment_id=gate.output)
    deploy = DeployOperator(task_id="deploy", deployment_id=gate.output)
    canary = CanaryOperator(task_id="canary", deployment_id=gate.output)
    promote = PromoteOperator(task_id="promote", deployment_id=gate.output)
    gate >> approval >> deploy >> canary >> promote
