"""RegisterOperator on a real MLflow store: the evaluated run becomes a model version and the challenger, the
``clm_candidate`` event carries the version, the caller is in the audit log, and a retried task registers nothing
twice. An unevaluated run fails with what to do."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from clm_lib import audit
from clm_lib.airflow.assets import CANDIDATE
from clm_lib.airflow.operators.registry import RegisterOperator
from clm_lib.db import session_scope
from clm_lib.db.models import Evaluation, TrainingRun
from clm_lib.errors import RegistryError
from clm_lib.registry.aliases import CHALLENGER
from clm_lib.registry.mlflow_registry import alias_version


class _Event:
    extra: dict | None = None


def _context() -> dict:
    return {
        "outlet_events": {CANDIDATE: _Event()},
        "dag": SimpleNamespace(dag_id="clm_continual_training"),
        "dag_run": SimpleNamespace(triggering_user_name="ada"),
    }


def test_an_evaluated_run_becomes_the_challenger_once(adapter_run):
    cfg, run_id = adapter_run
    with session_scope(cfg.database_url) as s:
        s.add(Evaluation(training_run_id=run_id, tasks=["routers"], scores={"routers": 80.0}, matrix=[[80.0]],
                         average_accuracy=80.0))  # fmt: skip
    ctx = _context()

    version = RegisterOperator(task_id="register", training_run_id=run_id).execute(ctx)

    assert version == "1" and alias_version(cfg, CHALLENGER) == "1"
    assert ctx["outlet_events"][CANDIDATE].extra == {"version": "1", "training_run_id": run_id}
    with session_scope(cfg.database_url) as s:
        assert s.get(TrainingRun, run_id).model_version == "1"
        entry = audit.recent(s, action="model.registered")[0]
        assert (entry.actor, entry.to_value) == ("airflow:ada", "1")

    again = _context()  # a retried task
    assert RegisterOperator(task_id="register", training_run_id=run_id).execute(again) == "1"
    assert again["outlet_events"][CANDIDATE].extra["version"] == "1"


def test_an_unevaluated_run_is_refused_with_what_to_do(adapter_run):
    _, run_id = adapter_run

    with pytest.raises(RegistryError, match=f"training run {run_id} has not been evaluated; evaluate it first"):
        RegisterOperator(task_id="register", training_run_id=run_id).execute(_context())
