"""The reconciler against an in-memory serving backend (``fakes.FakeBackend``), a real MLflow registry and clm's
database: a promotion whose process died mid-canary (the state SIGKILL leaves: the candidate on part of the
traffic, the deployment ``canary`` for ever) is ended through the rollback function; a live one is left alone."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from clm_lib.db import session_scope
from clm_lib.db.models import AuditEntry, Deployment, utcnow
from clm_lib.deploy import history
from clm_lib.deploy.lock import deploy_lock
from clm_lib.deploy.reconciler import reconcile
from clm_lib.deploy.rollout import canary, deploy, start
from clm_lib.errors import DeployBusyError
from clm_lib.registry.aliases import CHAMPION
from clm_lib.registry.mlflow_registry import alias_version

from .fakes import FakeBackend


class _Killed(BaseException):
    """What SIGKILL leaves: the process stops where it is and no ``except`` runs, so no automatic rollback either.
    (``finally`` blocks do run here, but a bake window holds no lock, so there is nothing for them to release.)"""


class DiesInBake:
    """A golden-set probe during whose ``at``-th call the process dies: at the end of the first bake window."""

    def __init__(self, at: int):
        self.at, self.calls = at, 0

    def score(self, backend, slot) -> float:
        self.calls += 1
        if self.calls == self.at:
            raise _Killed
        return 90.0


def _killed_mid_canary(cfg, be, version: str, *, stable: bool = True) -> int:
    """Gate, deploy, first canary step, then the owner dies in the bake window; the deployment id."""
    dep_id = start(cfg, version, actor="airflow:ada")
    assert deploy(cfg, dep_id, backend=be) == "deployed"
    with pytest.raises(_Killed):
        # With a stable slot its golden score is taken first (call 1); the candidate's ends the first window.
        canary(cfg, dep_id, backend=be, golden=DiesInBake(at=2 if stable else 1))
    with session_scope(cfg.database_url) as s:
        assert history.load(s, dep_id).status == "canary"
    return dep_id


def _later(cfg, extra: float = 1.0):
    return utcnow() + timedelta(seconds=cfg.deploy.reconciler.stale_after_seconds + extra)


def _slot_of(be, version: str) -> str:
    return next(s for s, v in be.slots.items() if v == version)


def test_a_promotion_whose_owner_died_mid_canary_is_ended_and_the_champion_gets_all_traffic(
    two_promoted, register_version
):
    cfg, be, _v1, v2 = two_promoted
    v3 = register_version(cfg)
    dep_id = _killed_mid_canary(cfg, be, v3)
    assert be.weights()[_slot_of(be, v3)] == 10 and be.serving() is None
    with pytest.raises(DeployBusyError, match="still canary"):
        start(cfg, v3)  # the dead promotion blocks every later one

    result = reconcile(cfg, backend=be, now=_later(cfg))

    [settled] = result.settled
    assert (settled.deployment_id, settled.outcome, settled.status_before) == (dep_id, "abandoned", "canary")
    assert be.serving() == v2 and be.weights()[_slot_of(be, v3)] == 0
    assert alias_version(cfg, CHAMPION) == v2
    with session_scope(cfg.database_url) as s:
        dep = history.load(s, dep_id)
        assert dep.status == "abandoned" and "lost its owner" in dep.outcome and "canary" in dep.outcome
        rb = history.load(s, settled.rollback_id)
        assert (rb.kind, rb.status, rb.version, rb.from_version, rb.actor) == (
            "rollback", "completed", v2, v3, "clm:reconciler",
        )  # fmt: skip
        ended = s.scalars(
            select(AuditEntry).where(AuditEntry.action == "deploy.rollback", AuditEntry.target.endswith(f"/{v3}"))
        ).one()
        assert ended.actor == "clm:reconciler" and "abandoned by clm:reconciler" in ended.reason
        assert "no event since, and nobody holds the deploy lock" in ended.reason
        [alert] = s.scalars(select(AuditEntry).where(AuditEntry.action == "alert")).all()
        assert (alert.details["kind"], alert.details["deployment_id"], alert.details["rollback_id"]) == (
            "deployment_abandoned", dep_id, settled.rollback_id,
        )  # fmt: skip
    assert start(cfg, v3) > dep_id, "promotions are no longer blocked"


def test_a_promotion_within_the_bound_is_left_alone_it_may_be_baking(two_promoted, register_version):
    cfg, be, _v1, _v2 = two_promoted
    v3 = register_version(cfg)
    dep_id = _killed_mid_canary(cfg, be, v3)
    weights = be.weights()

    result = reconcile(cfg, backend=be, now=_later(cfg, extra=-60))

    assert result.settled == [] and result.ok
    assert be.weights() == weights
    with session_scope(cfg.database_url) as s:
        assert history.load(s, dep_id).status == "canary"
        assert s.scalars(select(Deployment).where(Deployment.kind == "rollback")).first() is None


def test_nothing_is_judged_while_someone_holds_the_deploy_lock(two_promoted, register_version):
    cfg, be, _v1, _v2 = two_promoted
    v3 = register_version(cfg)
    dep_id = _killed_mid_canary(cfg, be, v3)

    with deploy_lock(cfg.database_url, "a slow model load", wait_seconds=0, lease_seconds=60):
        result = reconcile(cfg, backend=be, now=_later(cfg))

    assert result.busy is not None and "a slow model load" in result.busy and result.settled == []
    with session_scope(cfg.database_url) as s:
        assert history.load(s, dep_id).status == "canary"
    assert reconcile(cfg, backend=be, now=_later(cfg)).settled[0].outcome == "abandoned"


def test_a_failed_task_settles_its_own_deployment_at_once_and_no_other(two_promoted, register_version):
    cfg, be, _v1, v2 = two_promoted
    v3 = register_version(cfg)
    dep_id = _killed_mid_canary(cfg, be, v3)

    assert reconcile(cfg, backend=be, deployment_id=dep_id - 1, owner_gone=True).settled == []
    result = reconcile(cfg, backend=be, deployment_id=dep_id, owner_gone=True)  # now: no waiting for the bound

    assert [(s.deployment_id, s.outcome) for s in result.settled] == [(dep_id, "abandoned")]
    assert "its task failed" in result.settled[0].message
    assert be.serving() == v2


def test_the_first_promotion_dying_has_nothing_to_return_to(deploy_cfg, register_version):
    be = FakeBackend()
    v1 = register_version(deploy_cfg)
    dep_id = _killed_mid_canary(deploy_cfg, be, v1, stable=False)
    assert be.serving() == v1

    [settled] = reconcile(deploy_cfg, backend=be, now=_later(deploy_cfg)).settled

    assert settled.outcome == "abandoned" and settled.rollback_id is None
    assert be.serving() == v1 and alias_version(deploy_cfg, CHAMPION) is None
    with session_scope(deploy_cfg.database_url) as s:
        dep = history.load(s, dep_id)
        assert dep.status == "abandoned" and "no earlier version to return to" in dep.outcome
        assert [e.step for e in history.events_of(s, dep_id)][-1] == "reconcile"
        assert s.scalars(select(AuditEntry).where(AuditEntry.action == "deploy.reconcile")).one().actor == (
            "clm:reconciler"
        )


def test_a_gated_promotion_that_never_deployed_ends_without_touching_traffic(two_promoted, register_version):
    cfg, be, _v1, v2 = two_promoted
    v3 = register_version(cfg)
    dep_id = start(cfg, v3)
    calls = len(be.calls)

    [settled] = reconcile(cfg, backend=be, now=_later(cfg)).settled

    assert (settled.deployment_id, settled.outcome, settled.rollback_id) == (dep_id, "abandoned", None)
    assert len(be.calls) == calls and be.serving() == v2
    with session_scope(cfg.database_url) as s:
        assert "never had traffic" in history.load(s, dep_id).outcome


def test_a_dead_rollback_intent_is_settled_from_what_serves(two_promoted):
    cfg, be, v1, v2 = two_promoted
    with session_scope(cfg.database_url) as s:  # a rollback that died before it moved traffic
        dead = history.open_deployment(s, cfg, kind="rollback", version=v1, from_version=v2, strategy="rollback",
                                       status="pending", actor="oncall").id  # fmt: skip

    [settled] = reconcile(cfg, backend=be).settled

    assert (settled.deployment_id, settled.outcome) == (dead, "settled")
    with session_scope(cfg.database_url) as s:
        assert history.load(s, dead).status == "failed"
    assert be.serving() == v2 and alias_version(cfg, CHAMPION) == v2


def test_clm_deploy_reconcile_settles_and_reports(tmp_path, sqlite_url, mlflow_uri, register_version):
    from click.testing import CliRunner
    from sqlalchemy import update

    from clm_lib.cli import cli
    from clm_lib.config import load_config
    from clm_lib.db.models import DeploymentEvent

    env = {"CLM_HOME": str(tmp_path / "home"), "CLM_DATABASE_URL": sqlite_url, "MLFLOW_TRACKING_URI": mlflow_uri,
           "CLM__DEPLOY__STRATEGY": "alias"}  # fmt: skip
    cfg = load_config(environ=env)
    register_version(cfg)
    dep_id = start(cfg)  # gated, then its process died before the alias move
    idle = CliRunner().invoke(cli, ["deploy", "reconcile"], env=env, catch_exceptions=False)
    assert (idle.exit_code, idle.output) == (0, "every deployment under way has a live owner\n")
    long_ago = utcnow() - timedelta(seconds=cfg.deploy.reconciler.stale_after_seconds + 60)
    with session_scope(cfg.database_url) as s:
        s.execute(update(Deployment).where(Deployment.id == dep_id).values(started_at=long_ago))
        s.execute(update(DeploymentEvent).where(DeploymentEvent.deployment_id == dep_id).values(at=long_ago))

    result = CliRunner().invoke(cli, ["deploy", "reconcile"], env=env, catch_exceptions=False)

    assert result.exit_code == 0 and result.output.startswith(f"#{dep_id} abandoned: promotion #{dep_id}")
    with session_scope(cfg.database_url) as s:
        dep = history.load(s, dep_id)
        assert dep.status == "abandoned" and history.events_of(s, dep_id)[-1].message == dep.outcome
    assert "abandoned" in CliRunner().invoke(cli, ["deployments"], env=env).output
