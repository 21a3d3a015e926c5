"""The promotion and rollback operators on a real registry and database, with serving out of the picture
(``deploy.strategy: alias``; the rollout with serving is tested in tests/clm_lib/deploy): the XCom hand-off of the
deployment id, a failed gate skipping, an ended deployment failing its task with the reason."""

from types import SimpleNamespace

import pytest
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from clm_lib.airflow.operators.promotion import CanaryOperator, DeployOperator, GateOperator, PromoteOperator
from clm_lib.airflow.operators.rollback import RollbackOperator
from clm_lib.db import session_scope
from clm_lib.db.models import Deployment
from clm_lib.registry.aliases import CHAMPION
from clm_lib.registry.mlflow_registry import alias_version


@pytest.fixture
def op_cfg(env_cfg, mlflow_uri, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
    monkeypatch.setenv("CLM__DEPLOY__STRATEGY", "alias")
    env_cfg.registry.tracking_uri = mlflow_uri
    env_cfg.deploy.strategy = "alias"
    return env_cfg


def _context(dag_id: str, **params) -> dict:
    return {
        "params": params,
        "dag": SimpleNamespace(dag_id=dag_id),
        "dag_run": SimpleNamespace(triggering_user_name="ada"),
    }


def _promote(version: str | None = None) -> str:
    deployment_id = GateOperator(task_id="gate").execute(_context("clm_promotion", version=version, reason="why"))
    steps = [DeployOperator, CanaryOperator, PromoteOperator]
    return [op(task_id=op.__name__, deployment_id=deployment_id).execute({}) for op in steps][-1]


def test_the_tasks_hand_the_deployment_on_and_promote(op_cfg, register_version):
    v1 = register_version(op_cfg)

    assert _promote() == "promoted"

    assert alias_version(op_cfg, CHAMPION) == v1
    with session_scope(op_cfg.database_url) as s:
        dep = s.query(Deployment).one()
        assert (dep.status, dep.actor, dep.reason) == ("promoted", "airflow:ada", "why")


def test_a_failed_gate_skips_the_rest(op_cfg, register_version):
    register_version(op_cfg, {"routers": 90.0})
    _promote()
    v2 = register_version(op_cfg, {"routers": 10.0})

    with pytest.raises(AirflowSkipException, match=f"version {v2}: gate failed against champion 1; champion stays 1"):
        GateOperator(task_id="gate").execute(_context("clm_promotion"))


def test_a_rolled_back_deployment_fails_its_task_with_the_reason(op_cfg):
    with session_scope(op_cfg.database_url) as s:
        dep = Deployment(kind="promotion", model_name="m", version="3", strategy="canary", status="rolled_back",
                         actor="x", outcome="rolled back automatically: error rate 50.0%", details={})  # fmt: skip
        s.add(dep)
        s.flush()
        deployment_id = dep.id

    with pytest.raises(AirflowFailException, match="version 3 rolled_back: rolled back automatically: error rate"):
        CanaryOperator(task_id="canary", deployment_id=str(deployment_id)).execute({})


def test_rollback_task_rolls_back_or_fails_with_what_to_do(op_cfg, register_version):
    register_version(op_cfg)
    _promote()
    with pytest.raises(AirflowFailException, match="no previous version to roll back to"):
        RollbackOperator(task_id="rollback").execute(_context("clm_rollback"))
    register_version(op_cfg)
    _promote()

    result = RollbackOperator(task_id="rollback").execute(_context("clm_rollback", reason="spike", to_version=None))

    assert (result["from_version"], result["to_version"]) == ("2", "1")
    assert alias_version(op_cfg, CHAMPION) == "1"
