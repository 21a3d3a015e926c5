"""The ``clm_alerts`` DAG's tasks: the stores checked (``store_unreachable`` alerts raised and resolved), then the
open alerts sent through the configured notifiers (:mod:`clm_lib.airflow.notifiers`).

A channel that cannot be reached is a recorded, retried attempt, never a failed task: the pipeline does not wait
on a notifier. The task fails only when clm's database cannot be read (then no alert can be sent either).
"""

from __future__ import annotations

from typing import Any

from airflow.sdk.exceptions import AirflowSkipException

from clm_lib.airflow.operators.base import ClmBaseOperator


class CheckStoresOperator(ClmBaseOperator):
    """MLflow, clm's database and the lake: an alert for each one down, resolved once it answers."""

    def execute(self, context: Any) -> dict:
        from clm_lib.alerts.stores import check_stores

        result = check_stores(self.cfg)
        self.log.info("stores down: %s; recovered: %s", result.down or "none", result.recovered or "none")
        return {"down": result.down, "recovered": result.recovered}


class DeliverAlertsOperator(ClmBaseOperator):
    """Send the open alerts that are due to each enabled channel, within its rate limit; record every attempt."""

    def execute(self, context: Any) -> dict:
        from clm_lib.airflow.notifiers import senders
        from clm_lib.alerts.delivery import deliver_pending

        cfg = self.cfg
        if not cfg.alerts.enabled or not cfg.alerts.channels():
            raise AirflowSkipException("no alert channel is enabled (alerts.email/webhook/apprise.enabled)")
        report = deliver_pending(cfg.database_url, cfg.alerts, senders(cfg.alerts))
        self.log.info("alerts: %s", report.summary())
        return {"sent": report.sent, "failed": report.failed, "gave_up": report.gave_up,
                "rate_limited": report.rate_limited, "no_sender": report.no_sender}  # fmt: skip
