"""clm_deploy_watch: settle promotions whose owner died, and watch the champion after its promotion.

Every 2 minutes. ``reconcile`` ends a promotion under way that stopped reporting back (no event for
``deploy.reconciler.stale_after_seconds`` and nobody holds the deploy lock: its task was killed) through the one
rollback function: its candidate back to 0 %, the champion on all traffic. ``guard`` judges the champion's live
traffic by the bake window's rules, often during ``deploy.guard.watch_minutes`` after the promotion and at a lower
rate after, and rolls back on a breach, with an ``alert`` entry in the audit log. docs/deploy.md, "After promotion".
"""

from clm_lib.airflow.dag import clm_dag
from clm_lib.airflow.operators.watch import GuardOperator, ReconcileOperator

with clm_dag(
    dag_id="clm_deploy_watch",
    schedule="*/2 * * * *",
    is_paused_upon_creation=False,  # a safety net: on unless someone switches it off
    doc_md=__doc__,
    default_args={"retries": 0},  # the next run, two minutes later, is the retry
):
    reconcile = ReconcileOperator(task_id="reconcile")
    # The guard runs even when the reconciler failed: a champion in breach must not wait for a stuck deployment.
    guard = GuardOperator(task_id="guard", trigger_rule="all_done")
    reconcile >> guard
