"""RetrainTriggerSensor: wait for a drift check's retrain request (the sensor path; the Asset path needs none).

Use it where drift checks run outside ``clm_drift_monitor`` (``clm drift check`` from another scheduler, a
serving-side monitor) or where a team wants training started by a watcher DAG: ``clm_retrain_watch`` waits with
this sensor and then triggers ``clm_continual_training`` with the request's ``drift_check_id``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue
from airflow.sdk.exceptions import AirflowException

from clm_lib.airflow.settings import DEFAULT_CONN_ID, resolve_config
from clm_lib.airflow.triggers.retrain import RetrainRequestTrigger


class RetrainTriggerSensor(BaseSensorOperator):
    """Succeed when a retrain request no training run took up exists; return it as XCom.

    It looks at requests newer than both ``max_age`` ago and the last request this task already returned in an
    earlier DAG run, so one request is handed out once even if the training it starts skips. ``deferrable``
    (default) waits in the triggerer, polling every ``poke_interval`` seconds; otherwise it pokes like any sensor.
    Both read the database that ``clm_conn_id`` and ``config_path`` resolve to, as every clm task does.
    """

    ui_color = "#fdf2e0"

    def __init__(
        self,
        *,
        max_age: timedelta = timedelta(days=1),
        deferrable: bool = True,
        clm_conn_id: str = DEFAULT_CONN_ID,
        config_path: str | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("poke_interval", 30.0)
        super().__init__(**kwargs)
        self.max_age = max_age
        self.deferrable = deferrable
        self.clm_conn_id = clm_conn_id
        self.config_path = config_path

    def since(self, context: Any) -> datetime:
        since = datetime.now(UTC) - self.max_age
        last = context["ti"].xcom_pull(task_ids=self.task_id, include_prior_dates=True)
        if isinstance(last, dict) and last.get("created_at"):
            since = max(since, datetime.fromisoformat(last["created_at"]))
        return since

    def poke(self, context: Any) -> PokeReturnValue:
        from clm_lib.drift.monitor import pending_requests

        pending = pending_requests(resolve_config(self.clm_conn_id, self.config_path), self.since(context))
        return PokeReturnValue(is_done=bool(pending), xcom_value=pending[0] if pending else None)

    def execute(self, context: Any) -> Any:
        if not self.deferrable:
            return super().execute(context)
        found = self.poke(context)
        if found.is_done:
            return found.xcom_value
        self.defer(
            trigger=RetrainRequestTrigger(
                since=self.since(context).isoformat(),
                poll_interval=self.poke_interval,
                clm_conn_id=self.clm_conn_id,
                config_path=self.config_path,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout) if self.timeout else None,
        )

    def execute_complete(self, context: Any, event: dict[str, Any]) -> dict[str, Any]:
        if event.get("status") != "requested":
            raise AirflowException(f"waiting for a retrain request failed: {event.get('message', event)}")
        self.log.info("retrain requested by drift check %s: %s", event["request"]["check_id"], event["request"])
        return event["request"]
