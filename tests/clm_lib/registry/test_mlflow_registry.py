"""What a registered version logs to MLflow about its evaluation."""

from __future__ import annotations

from clm_lib.db.models import Evaluation, TrainingRun
from clm_lib.registry.mlflow_registry import _metrics


def test_every_task_metric_is_logged_as_task_dot_metric():
    run = TrainingRun(id="r", metrics={"loss": 0.5, "note": "text"})
    evaluation = Evaluation(
        scores={"billing": 44.4, "routers": 90.0},
        metrics={"billing": {"primary": "macro_f1", "values": {"exact_match": 80.0, "macro_f1": 44.4}}},
        average_accuracy=67.2,
        backward_transfer=None,
    )
    assert _metrics(run, evaluation) == {
        "accuracy.billing": 44.4,  # the primary metric, as before
        "accuracy.routers": 90.0,
        "billing.exact_match": 80.0,
        "billing.macro_f1": 44.4,
        "average_accuracy": 67.2,
        "train.loss": 0.5,
    }
