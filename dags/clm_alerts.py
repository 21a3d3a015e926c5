"""clm_alerts: the stores checked, then open alerts sent by e-mail, webhook or Apprise.

Every 2 minutes (each run starts two task processes; every minute would cost a small host ~10 % of a core).
``check_stores`` raises an alert for MLflow, clm's database or the lake not answering (and resolves it when they
answer again); ``deliver`` sends each open, unacknowledged alert once per enabled channel, within the
channel's hourly limit, retrying a failed channel with backoff. A notifier that is down never fails the run, and
nothing else waits for this DAG. docs/control-panel.md, "Alerts".
"""

from datetime import timedelta

from clm_lib.airflow.dag import clm_dag
from clm_lib.airflow.operators.alerts import CheckStoresOperator, DeliverAlertsOperator

with clm_dag(
    dag_id="clm_alerts",
    schedule="*/2 * * * *",
    is_paused_upon_creation=False,  # alerts that nobody receives are the problem this DAG solves
    doc_md=__doc__,
    default_args={"retries": 0, "execution_timeout": timedelta(minutes=5)},  # the next run is the retry
):
    check = CheckStoresOperator(task_id="check_stores")
    # Alerts go out even when a store check failed: that is when they matter.
    deliver = DeliverAlertsOperator(task_id="deliver", trigger_rule="all_done")
    check >> deliver
