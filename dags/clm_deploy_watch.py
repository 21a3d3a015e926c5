"""clm_deploy_watch: settle promotions whose owner died, and watch the champion after its promotion.

Every 2 minutes. ``reconcile`` ends a promotion under way that stopped reporting back (no event for
``deploy.reconciler.stale_after_seconds`` and nobody holds the deploy lock: its task was killed) through the one
rollback function: its candidate back to 0 %, the champion on all traffic. ``guard`` judges the champion's live
traffic by the bake window's rules, often during ``deploy.guard.watch_minutes`` after the promotion and at a lower
rate after, and rolls back on a breach, with an ``alert`` entry in the audit log. docs/deploy.md, "After promotion".
"""

from datetime import datetime

from airflow.sdk import DAG

from clm_lib.airflow.callbacks import dag_failed
from clm_lib.airflow.operators.watch import GuardOperator, ReconcileOperator

with DAG(
    dag_id="clm_deploy_watch",
    schedule="*/2 * * * *",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    is_paused_upon_creation=False,  # a safety net: on unless someone switches it off
    tags=["clm"],
    doc_md=__doc__,
    on_failure_callback=dag_failed,  # a failed run is an alert (clm_lib/alerts)
    default_args={"retries": 0},  # the next run, two minutes later, is the retry
):
    reconcile = ReconcileOperator(task_id="reconcile")
    # The guard runs even when the reconciler failed: a champion in breach must not wait for a stuck deployment.
    guard = GuardOperator(task_id="guard", trigger_rule="all_done")
    reconcile >> guard
