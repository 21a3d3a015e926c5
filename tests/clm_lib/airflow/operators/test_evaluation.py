"""EvaluateOperator on the tiny model: scores the run's adapter on the held-out records, stores the forgetting
matrix row in clm's database and returns what the log shows; a run that did not succeed fails the task."""

from __future__ import annotations

import pytest

from clm_lib.airflow.operators.evaluation import EvaluateOperator
from clm_lib.db import session_scope
from clm_lib.db.models import Evaluation, TrainingRun
from clm_lib.errors import TrainingError


def test_scores_every_task_of_the_run_and_stores_the_row(adapter_run):
    cfg, run_id = adapter_run

    result = EvaluateOperator(task_id="evaluate", training_run_id=run_id).execute({})

    assert list(result["scores"]) == ["routers"] and 0.0 <= result["scores"]["routers"] <= 100.0
    assert result["backward_transfer"] is None  # the first run has nothing to forget
    with session_scope(cfg.database_url) as s:
        stored = s.query(Evaluation).filter_by(training_run_id=run_id).one()
        assert stored.scores == result["scores"] and stored.matrix == [[result["scores"]["routers"]]]
        assert stored.average_accuracy == result["average_accuracy"]


def test_a_failed_run_is_not_evaluated(adapter_run):
    cfg, run_id = adapter_run
    with session_scope(cfg.database_url) as s:
        s.get(TrainingRun, run_id).status = "failed"

    with pytest.raises(TrainingError, match=f"training run {run_id} is failed, not succeeded"):
        EvaluateOperator(task_id="evaluate", training_run_id=run_id).execute({})
