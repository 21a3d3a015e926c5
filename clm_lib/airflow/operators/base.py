"""What every clm operator shares: clm's config from the one resolver (through the hook), and the caller's identity."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from clm_lib.airflow.hooks.clm import ClmHook

if TYPE_CHECKING:
    from clm_lib.config import ClmConfig


class ClmBaseOperator(BaseOperator):
    ui_color = "#e8f0fe"

    def __init__(self, *, clm_conn_id: str = ClmHook.default_conn_name, config_path: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self.clm_conn_id = clm_conn_id
        self.config_path = config_path

    _run_started: Any = None

    def pre_execute(self, context: Any) -> None:
        # The configuration revision live when the DAG run started applies to all of its tasks, even one that
        # starts after someone saved a newer revision mid-run (resolve_config's as_of).
        dag_run = context.get("dag_run")
        self._run_started = getattr(dag_run, "start_date", None) or getattr(dag_run, "run_after", None)
        super().pre_execute(context)

    @property
    def cfg(self) -> ClmConfig:
        # Resolved on each access, not at parse time: the connection may change between runs.
        return ClmHook(self.clm_conn_id, self.config_path, as_of=self._run_started).config

    @staticmethod
    def actor(context: Any) -> str:
        """Who the change is made for: the DAG run's triggering user, else the scheduler."""
        dag_run = context.get("dag_run")
        user = getattr(dag_run, "triggering_user_name", None) if dag_run else None
        return f"airflow:{user}" if user else f"airflow:{context['dag'].dag_id}"

    @staticmethod
    def quiet_libraries() -> None:
        # GX and MLflow log at INFO per call; the task log should show clm's own lines.
        for name in ("great_expectations", "mlflow", "alembic", "urllib3"):
            logging.getLogger(name).setLevel(logging.WARNING)
