"""RollbackOperator (the ``clm_rollback`` DAG's task) on a real registry and database, serving out of the picture
(``deploy.strategy: alias``): the params it reads, what it records for whom, and a refusal failing the task
(no retry) with what to do. tests/clm_lib/airflow/operators/test_promotion.py rolls back after real promotions."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from airflow.sdk.exceptions import AirflowFailException

from clm_lib.airflow.operators.rollback import RollbackOperator
from clm_lib.db import session_scope
from clm_lib.db.models import Deployment
from clm_lib.registry.aliases import CHAMPION, PREVIOUS
from clm_lib.registry.mlflow_registry import alias_version


@pytest.fixture
def two_champions(env_cfg, mlflow_uri, monkeypatch, register_version):
    """Versions 1 then 2 promoted by the ``alias`` strategy: 2 is champion, 1 previous."""
    from clm_lib.deploy.rollout import rollout

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
    monkeypatch.setenv("CLM__DEPLOY__STRATEGY", "alias")
    env_cfg.registry.tracking_uri = mlflow_uri
    env_cfg.deploy.strategy = "alias"
    for _ in range(2):
        register_version(env_cfg)
        rollout(env_cfg)
    assert (alias_version(env_cfg, CHAMPION), alias_version(env_cfg, PREVIOUS)) == ("2", "1")
    return env_cfg


def _context(**params) -> dict:
    return {"params": params, "dag": SimpleNamespace(dag_id="clm_rollback"), "dag_run": None}


def test_rolls_back_to_previous_and_records_who_and_why(two_champions):
    result = RollbackOperator(task_id="rollback").execute(_context(reason="wrong answers", to_version=None))

    assert (result["from_version"], result["to_version"], result["slot"]) == ("2", "1", None)
    assert alias_version(two_champions, CHAMPION) == "1"
    with session_scope(two_champions.database_url) as s:
        dep = s.get(Deployment, result["deployment_id"])
        # No triggering user (a scheduled or API-less run): the DAG is named as the actor.
        assert (dep.kind, dep.version, dep.actor) == ("rollback", "1", "airflow:clm_rollback")
        assert "wrong answers" in dep.reason


def test_a_refused_rollback_fails_the_task_with_the_reason_and_changes_nothing(two_champions):
    # The refusal's wording is the core's (tests/clm_lib/deploy); the task must carry it, not a traceback.
    with pytest.raises(AirflowFailException, match=r"^version 9 "):
        RollbackOperator(task_id="rollback").execute(_context(to_version=9, reason="typo"))

    assert alias_version(two_champions, CHAMPION) == "2"
    with session_scope(two_champions.database_url) as s:
        assert s.query(Deployment).filter_by(kind="rollback").count() == 0
