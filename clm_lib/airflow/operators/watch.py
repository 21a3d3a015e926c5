"""The ``clm_deploy_watch`` DAG's tasks: the reconciler, then the post-promotion guard, each one call into
``clm_lib.deploy`` (:func:`~clm_lib.deploy.reconciler.reconcile`, :func:`~clm_lib.deploy.guard.guard`).

A task fails only when something could not be done (a dead deployment not settled, serving unreadable, a rollback
refused); a breach the guard rolled back is a success of the task, and its alert is in the audit log.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from clm_lib.airflow.operators.base import ClmBaseOperator


class ReconcileOperator(ClmBaseOperator):
    """End every promotion whose owner stopped reporting back: its candidate's traffic back on the champion."""

    def execute(self, context: Any) -> dict:
        from clm_lib.deploy.reconciler import reconcile

        self.quiet_libraries()
        cfg = self.cfg
        if not cfg.deploy.reconciler.enabled:
            raise AirflowSkipException("the reconciler is off (deploy.reconciler.enabled)")
        result = reconcile(cfg, actor=self.actor(context))
        self.log.info("reconciler: %s", result.summary())
        if not result.ok:
            raise AirflowFailException(result.summary())  # the next run tries again
        return result.as_dict()


class GuardOperator(ClmBaseOperator):
    """Judge the champion's live traffic after its promotion; roll back on a breach."""

    def execute(self, context: Any) -> dict:
        from clm_lib.deploy.guard import guard

        self.quiet_libraries()
        result = guard(self.cfg, actor=self.actor(context))
        self.log.info("guard: %s: %s", result.verdict, result.message)
        if result.error:
            raise AirflowFailException(f"guard ({result.verdict}): {result.error}")
        return result.as_dict()
