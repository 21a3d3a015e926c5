"""The ``clm_deploy_watch`` tasks and the promotion's failure callback on a real registry and database, serving out
of the picture (``deploy.strategy: alias``; the reconciler and the guard with serving are tested in
tests/clm_lib/deploy): a promotion whose task died stays ``pending`` until they settle it."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace

import pytest
from airflow.sdk.exceptions import AirflowFailException
from sqlalchemy import update

from clm_lib.airflow.callbacks import settle_deployment
from clm_lib.airflow.operators.promotion import GateOperator
from clm_lib.airflow.operators.watch import GuardOperator, ReconcileOperator
from clm_lib.db import session_scope
from clm_lib.db.models import Deployment, DeploymentEvent, utcnow
from clm_lib.deploy.guard import GuardResult
from clm_lib.registry.aliases import CHAMPION
from clm_lib.registry.mlflow_registry import alias_version


@pytest.fixture
def orphan(env_cfg, mlflow_uri, monkeypatch, register_version):
    """(cfg, deployment id): version 1 champion, version 2 gated by ``clm_promotion`` whose next task then died."""
    from clm_lib.deploy.rollout import rollout

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
    monkeypatch.setenv("CLM__DEPLOY__STRATEGY", "alias")
    env_cfg.registry.tracking_uri = mlflow_uri
    env_cfg.deploy.strategy = "alias"
    register_version(env_cfg)
    rollout(env_cfg)
    register_version(env_cfg)
    ctx = {"params": {}, "dag": SimpleNamespace(dag_id="clm_promotion"), "dag_run": None}
    return env_cfg, GateOperator(task_id="gate").execute(ctx)


class _TI:
    def __init__(self, gate_returned):
        self.gate_returned = gate_returned

    def xcom_pull(self, task_ids):
        assert task_ids == "gate"
        return self.gate_returned


def _failed(task_id: str, gate_returned) -> dict:
    return {"ti": _TI(gate_returned), "task": SimpleNamespace(task_id=task_id), "dag": SimpleNamespace(dag_id="p")}


def _status(cfg, deployment_id: int) -> tuple[str, str]:
    with session_scope(cfg.database_url) as s:
        dep = s.get(Deployment, deployment_id)
        return dep.status, dep.outcome


def test_the_failure_callback_has_the_reconciler_settle_the_runs_deployment_at_once(orphan):
    cfg, dep_id = orphan
    assert _status(cfg, dep_id)[0] == "pending"

    settle_deployment(_failed("deploy", dep_id))

    status, outcome = _status(cfg, dep_id)
    assert status == "abandoned" and "its task failed" in outcome
    assert alias_version(cfg, CHAMPION) == "1"


def test_the_failure_callback_leaves_a_live_deployment_alone_when_the_gate_returned_nothing(orphan):
    cfg, dep_id = orphan

    settle_deployment(_failed("gate", None))  # no deployment known: only the silence bound applies, not reached

    assert _status(cfg, dep_id)[0] == "pending"


def test_the_failure_callback_never_raises(orphan, monkeypatch):
    cfg, dep_id = orphan
    monkeypatch.setenv("CLM_DATABASE_URL", "sqlite:////nonexistent/dir/clm.db")

    settle_deployment(_failed("canary", dep_id))  # logged; the watch DAG settles it later

    assert _status(cfg, dep_id)[0] == "pending"


def test_the_reconcile_task_settles_a_deployment_silent_past_the_bound(orphan):
    cfg, dep_id = orphan
    ctx = {"dag": SimpleNamespace(dag_id="clm_deploy_watch"), "dag_run": None}
    assert ReconcileOperator(task_id="reconcile").execute(ctx)["settled"] == []
    long_ago = utcnow() - timedelta(seconds=cfg.deploy.reconciler.stale_after_seconds + 60)
    with session_scope(cfg.database_url) as s:
        s.execute(update(Deployment).where(Deployment.id == dep_id).values(started_at=long_ago))
        s.execute(update(DeploymentEvent).where(DeploymentEvent.deployment_id == dep_id).values(at=long_ago))

    result = ReconcileOperator(task_id="reconcile").execute(ctx)

    assert [(s["deployment_id"], s["outcome"]) for s in result["settled"]] == [(dep_id, "abandoned")]
    status, outcome = _status(cfg, dep_id)
    assert status == "abandoned" and "nobody holds the deploy lock" in outcome


def test_the_guard_task_fails_when_the_guard_could_not_do_its_job(orphan, monkeypatch):
    import clm_lib.deploy.guard as guard_module

    ctx = {"dag": SimpleNamespace(dag_id="clm_deploy_watch"), "dag_run": None}
    assert GuardOperator(task_id="guard").execute(ctx)["verdict"] == "skipped"  # alias: no serving to watch
    seen = {}

    def broken(cfg, *, actor):
        seen["actor"] = actor
        return GuardResult("breach", "error rate 50%", error="the guard could not roll back: busy")

    monkeypatch.setattr(guard_module, "guard", broken)

    with pytest.raises(AirflowFailException, match="could not roll back: busy"):
        GuardOperator(task_id="guard").execute(ctx)
    assert seen["actor"] == "airflow:clm_deploy_watch"
