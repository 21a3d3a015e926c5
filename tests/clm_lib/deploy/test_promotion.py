"""Promotion against a real MLflow registry (SQLite store) and clm's database on SQLite and PostgreSQL."""

from __future__ import annotations

import mlflow
import pytest

from clm_lib.config import load_config
from clm_lib.db import session_scope
from clm_lib.db.models import AuditEntry, Evaluation, GateDecision, TrainingRun
from clm_lib.deploy.promotion import promote
from clm_lib.errors import RegistryError
from clm_lib.registry.aliases import CHALLENGER, CHAMPION
from clm_lib.registry.mlflow_registry import alias_version, client, move_alias


class _Echo(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return list(model_input)


@pytest.fixture
def cfg(tmp_path, db_url, mlflow_uri):
    return load_config(
        environ={
            "CLM_HOME": str(tmp_path),
            "CLM_DATABASE_URL": db_url,
            "MLFLOW_TRACKING_URI": mlflow_uri,
            "CLM__GATE__MAX_TASK_DROP": "5",
        }
    )


def _candidate(cfg, scores: dict[str, float], metrics: dict | None = None) -> str:
    """Register a model version and store its evaluation, as training + evaluate + register would."""
    client(cfg)
    mlflow.set_experiment("test")
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=_Echo(),
            pip_requirements=["mlflow"],
            registered_model_name=cfg.registry.model_name,
        )
    version = str(info.registered_model_version)
    with session_scope(cfg.database_url) as s:
        s.add(
            TrainingRun(
                id=f"run-{version}",
                status="succeeded",
                base_model="b",
                config_hash="h",
                model_version=version,
                tasks=list(scores),
            )
        )
        s.flush()
        s.add(
            Evaluation(
                training_run_id=f"run-{version}",
                model_version=version,
                tasks=list(scores),
                scores=scores,
                metrics=metrics,
                matrix=[list(scores.values())],
                average_accuracy=50.0,
            )
        )
        move_alias(cfg, s, CHALLENGER, version, actor="test", reason="candidate")
    return version


def test_first_candidate_becomes_champion_and_is_audited(cfg):
    v1 = _candidate(cfg, {"a": 90.0})
    result = promote(cfg, actor="alice")
    assert (result.version, result.passed, result.champion_before, result.champion_after) == (v1, True, None, v1)
    assert alias_version(cfg, CHAMPION) == v1
    assert alias_version(cfg, CHALLENGER) is None
    with session_scope(cfg.database_url) as s:
        moves = [(e.action, e.from_value, e.to_value, e.actor) for e in s.query(AuditEntry).order_by(AuditEntry.id)]
        assert ("alias.champion", None, v1, "alice") in moves
        assert s.query(GateDecision).one().passed


def test_regressing_candidate_is_rejected_and_champion_stays(cfg):
    v1 = _candidate(cfg, {"a": 90.0})
    promote(cfg)
    v2 = _candidate(cfg, {"a": 60.0, "b": 95.0})
    result = promote(cfg, v2)
    assert not result.passed and result.champion_after == v1
    assert alias_version(cfg, CHAMPION) == v1
    assert any("REGRESSED" in r for r in result.reasons)
    tags = client(cfg).get_model_version(cfg.registry.model_name, v2).tags
    assert tags["clm.gate"] == "failed"
    with session_scope(cfg.database_url) as s:
        decision = s.query(GateDecision).filter_by(model_version=v2).one()
        assert (decision.passed, decision.champion_version) == (False, v1)


def test_the_gate_compares_each_task_on_its_primary_metric(cfg):
    def stored(exact: float, f1: float) -> dict:
        return {"billing": {"primary": "macro_f1", "values": {"exact_match": exact, "macro_f1": f1}}}

    v1 = _candidate(cfg, {"billing": 70.0}, stored(80.0, 70.0))
    promote(cfg)
    # More answers right (the majority label), the rare label lost: macro F1, the primary, dropped 25 points.
    v2 = _candidate(cfg, {"billing": 45.0}, stored(85.0, 45.0))
    result = promote(cfg, v2)
    assert not result.passed and result.champion_after == v1
    assert result.reasons == ["billing (macro_f1): 70.0 -> 45.0 (-25.0; budget -5.0) REGRESSED"]


def test_improving_candidate_replaces_champion(cfg):
    v1 = _candidate(cfg, {"a": 90.0})
    promote(cfg)
    v2 = _candidate(cfg, {"a": 88.0, "b": 95.0})
    assert promote(cfg).champion_after == v2
    assert alias_version(cfg, CHAMPION) == v2
    assert promote(cfg, v2).reasons == ["already champion"]
    assert v1 != v2


def test_nothing_to_promote_is_a_clear_error(cfg):
    with pytest.raises(RegistryError, match="no challenger"):
        promote(cfg)
