"""EvaluateOperator: score every task, old and new, on the run's output."""

from __future__ import annotations

from typing import Any

from clm_lib.airflow.operators.base import ClmBaseOperator


class EvaluateOperator(ClmBaseOperator):
    template_fields = ("training_run_id",)

    def __init__(self, *, training_run_id: str, **kwargs):
        super().__init__(**kwargs)
        self.training_run_id = training_run_id

    def execute(self, context: Any) -> dict:
        from clm_lib.evaluation.evaluate import evaluate_run

        self.quiet_libraries()
        ev = evaluate_run(self.cfg, self.training_run_id)
        self.log.info("R row %s | AA %.2f | BWT %s", ev.scores, ev.average_accuracy, ev.backward_transfer)
        return {"scores": ev.scores, "average_accuracy": ev.average_accuracy, "backward_transfer": ev.backward_transfer}
