"""Task and DAG callbacks: what clm does when Airflow gives up on one of its tasks or DAG runs.

:func:`settle_deployment` is the ``on_failure_callback`` of every ``clm_promotion`` task. A task that fails in the
ordinary way has already ended its deployment (rolled back, failed) and this finds nothing to do; one killed with
SIGKILL, or lost with its worker, left the deployment under way with its candidate on traffic (issue #10). Airflow
runs the callback in the task's process after an exception, or in the DAG processor when the task's heartbeat
stopped (``TaskCallbackRequest``); either way the owner is gone, so the reconciler settles that deployment at once,
without waiting out ``deploy.reconciler.stale_after_seconds``: :func:`clm_lib.deploy.reconciler.reconcile` with
``owner_gone``, the same function ``clm_deploy_watch`` runs.

:func:`dag_failed` is the DAG-level ``on_failure_callback`` of every clm DAG: a failed run becomes an alert
(:mod:`clm_lib.alerts`), delivered by ``clm_alerts``.
"""

from __future__ import annotations

import logging
from typing import Any

from clm_lib.airflow.settings import DEFAULT_CONN_ID

log = logging.getLogger(__name__)

GATE_TASK = "gate"
"""The ``clm_promotion`` task whose return value (XCom) is the deployment id."""
LOCK_WAIT_SECONDS = 10.0
"""The most the callback waits for the deploy lock. A lock the dead task held stays taken until its lease runs out
(minutes), so waiting longer rarely helps, and the DAG processor gives a callback about 50 s in all
(``[dag_processor] dag_file_processor_timeout``); the watch DAG settles what the callback could not."""


def deployment_of(context: Any) -> int | None:
    """The deployment the failed task's DAG run opened (None: its gate never returned one)."""
    ti = context.get("ti")
    if ti is None:
        return None
    value = ti.xcom_pull(task_ids=GATE_TASK)
    return int(value) if value is not None else None


def settle_deployment(context: Any) -> None:
    """``on_failure_callback``: settle the failed run's deployment if it is still under way. Never raises (Airflow
    would only log it): what it could not do, the reconciler in ``clm_deploy_watch`` does on its next run."""
    from clm_lib.airflow.settings import resolve_config
    from clm_lib.deploy.reconciler import reconcile

    task = context.get("task")
    try:
        cfg = resolve_config(getattr(task, "clm_conn_id", DEFAULT_CONN_ID), getattr(task, "config_path", None))
        cfg.deploy.lock_wait_seconds = min(cfg.deploy.lock_wait_seconds, LOCK_WAIT_SECONDS)
        deployment_id = deployment_of(context)
        if deployment_id is None:  # the gate itself failed: no deployment of this run is known, so the usual bound
            result = reconcile(cfg)
        else:
            result = reconcile(cfg, deployment_id=deployment_id, owner_gone=True)
        log.warning("after %s failed: %s", getattr(task, "task_id", "a task"), result.summary())
    except Exception:
        log.exception("the reconciler could not settle the failed task's deployment; clm_deploy_watch will")


def dag_failed(context: Any) -> None:
    """DAG-level ``on_failure_callback`` of every clm DAG: a ``dag_failed`` alert, one open alert per DAG (a DAG that
    keeps failing counts up instead of paging again). Airflow runs it in the DAG processor; it never raises, and an
    alert it cannot write is logged (clm's database down is then what the Integrations screen shows)."""
    from clm_lib.airflow.settings import resolve_config
    from clm_lib.alerts import Link, record_alert

    try:
        dag_run, dag = context.get("dag_run"), context.get("dag")
        dag_id = getattr(dag_run, "dag_id", None) or getattr(dag, "dag_id", None) or "unknown"
        run_id = getattr(dag_run, "run_id", None) or ""
        why = str(context.get("reason") or "a task failed")
        cfg = resolve_config(DEFAULT_CONN_ID)
        links = [Link("DAG run", f"/dags/{dag_id}/runs/{run_id}" if run_id else f"/dags/{dag_id}")]
        record_alert(cfg.database_url, kind="dag_failed", cause=f"dag_failed:{dag_id}", severity="critical",
                     message=f"{dag_id} run {run_id} failed: {why}", links=links)  # fmt: skip
    except Exception:
        log.exception("could not raise the failed-run alert")
