"""What an evaluation writes: the primary metric as the task's score and R's column, every metric beside it."""

from __future__ import annotations

import pytest

from clm_lib.db import session_scope
from clm_lib.db.models import Evaluation, TrainingRun
from clm_lib.evaluation.evaluate import evaluate_run
from clm_lib.evaluation.metrics import TaskScore


@pytest.fixture
def scored(monkeypatch):
    """evaluate_run with the model, the lake and the scorer replaced by fixed per-task scores."""
    import clm_lib.data.ingest
    import clm_lib.evaluation.metrics
    import clm_lib.modeling.load

    values = {
        "routers": {"exact_match": 90.0, "label_accuracy": 90.0, "macro_f1": 70.0, "token_f1": 95.0, "rouge_l": 94.0},
        "billing": {"exact_match": 85.0, "label_accuracy": 86.0, "macro_f1": 44.444, "token_f1": 90.0, "rouge_l": 89.0},
    }  # fmt: skip
    calls = {}

    def score_tasks(model, tokenizer, data, **kwargs):
        calls.update(kwargs)
        return {t: TaskScore(v["exact_match"], 95.0, 0.1, 20, metrics=v) for t, v in values.items()}

    monkeypatch.setattr(clm_lib.modeling.load, "load_model", lambda base, adapter: (None, None))
    monkeypatch.setattr(clm_lib.data.ingest, "held_out", lambda cfg, tasks: None)
    monkeypatch.setattr(clm_lib.evaluation.metrics, "score_tasks", score_tasks)
    return calls


def test_the_primary_metric_is_the_score_and_every_metric_is_stored(cfg, sqlite_url, scored):
    cfg.database.url = sqlite_url
    cfg.evaluation.metrics = {"billing": "macro_f1"}
    with session_scope(sqlite_url) as s:
        s.add(TrainingRun(id="r1", status="succeeded", base_model="b", config_hash="h", model_version="1",
                          tasks=["routers", "billing"], output_dir="/nowhere"))  # fmt: skip
        s.add(TrainingRun(id="r2", status="succeeded", base_model="b", config_hash="h", parent_model_version="1",
                          tasks=["routers", "billing"], output_dir="/nowhere"))  # fmt: skip
        s.flush()
        # The parent stored macro F1 beside its exact-match score: R's column reads it on today's metric.
        s.add(Evaluation(training_run_id="r1", model_version="1", tasks=["routers", "billing"],
                         scores={"routers": 88.0, "billing": 80.0}, matrix=[[88.0, 80.0]], average_accuracy=84.0,
                         metrics={"billing": {"primary": "exact_match",
                                              "values": {"exact_match": 80.0, "macro_f1": 60.0}}}))  # fmt: skip

    evaluation = evaluate_run(cfg, "r2")

    assert scored["all_metrics"] is True
    assert evaluation.scores == {"routers": 90.0, "billing": 44.44}
    assert evaluation.metrics["billing"] == {
        "primary": "macro_f1",
        "values": {"exact_match": 85.0, "label_accuracy": 86.0, "macro_f1": 44.44, "token_f1": 90.0, "rouge_l": 89.0},
    }
    assert evaluation.metrics["routers"]["primary"] == "exact_match"
    assert evaluation.matrix == [[88.0, 60.0], [90.0, 44.44]]
    # Forgetting on one metric per task: billing's macro F1 60 -> 44.44, not its exact match 80 against macro F1.
    assert evaluation.backward_transfer == pytest.approx(((90.0 - 88.0) + (44.44 - 60.0)) / 2, abs=0.01)
    assert evaluation.average_accuracy == pytest.approx((90.0 + 44.44) / 2, abs=0.01)
