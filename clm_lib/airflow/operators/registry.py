"""RegisterOperator: the evaluated run becomes an MLflow model version (challenger), announced as an Asset event."""

from __future__ import annotations

from typing import Any

from clm_lib.airflow.assets import CANDIDATE
from clm_lib.airflow.operators.base import ClmBaseOperator


class RegisterOperator(ClmBaseOperator):
    template_fields = ("training_run_id",)

    def __init__(self, *, training_run_id: str, **kwargs):
        kwargs.setdefault("outlets", [CANDIDATE])
        super().__init__(**kwargs)
        self.training_run_id = training_run_id

    def execute(self, context: Any) -> str:
        from clm_lib.registry.mlflow_registry import register_run

        self.quiet_libraries()
        version = register_run(self.cfg, self.training_run_id, actor=self.actor(context))
        context["outlet_events"][CANDIDATE].extra = {"version": version, "training_run_id": self.training_run_id}
        self.log.info("registered %s version %s", self.cfg.registry.model_name, version)
        return version
