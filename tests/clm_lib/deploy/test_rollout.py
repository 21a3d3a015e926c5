"""The rollout logic against an in-memory serving backend (a test double, ``fakes.FakeBackend``), a real MLflow
registry and clm's database. The same rollout on the real ``local`` backend: ``test_rollout_local.py``."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import select

from clm_lib.db import session_scope
from clm_lib.db.models import AuditEntry, Deployment, DeploymentEvent
from clm_lib.deploy import history
from clm_lib.deploy.rollback import rollback
from clm_lib.deploy.rollout import rollout
from clm_lib.errors import DeployBusyError, DeployError
from clm_lib.registry.aliases import CHALLENGER, CHAMPION, PREVIOUS
from clm_lib.registry.mlflow_registry import alias_version, client

from .conftest import make_cfg
from .fakes import Behaviour, FakeBackend, FakeGolden


def _steps(cfg, deployment_id: int) -> list[tuple[str, str]]:
    with session_scope(cfg.database_url) as s:
        return [(e.step, e.status) for e in history.events_of(s, deployment_id)]


def _candidate_weights(be: FakeBackend, version: str) -> list[int]:
    """The candidate's share of traffic after every weight change, in order."""
    out = []
    for w in be.weight_log:
        slot = next((s for s, v in be.slots.items() if v == version), None)
        out.append(w[slot] if slot else 0)
    return out


@pytest.fixture
def served(deploy_cfg, register_version):
    """Version 1 promoted and serving all traffic from one slot."""
    be = FakeBackend()
    v1 = register_version(deploy_cfg)
    assert rollout(deploy_cfg, actor="alice", backend=be, golden=None).status == "promoted"
    return deploy_cfg, be, v1


def test_first_version_goes_to_all_traffic_at_once_and_becomes_champion(deploy_cfg, register_version):
    be = FakeBackend()
    v1 = register_version(deploy_cfg)

    result = rollout(deploy_cfg, actor="alice", backend=be, golden=None)

    assert (result.status, result.champion_before, result.champion_after) == ("promoted", None, v1)
    assert be.serving() == v1 and alias_version(deploy_cfg, CHAMPION) == v1
    assert alias_version(deploy_cfg, CHALLENGER) is None and alias_version(deploy_cfg, PREVIOUS) is None
    assert _steps(deploy_cfg, result.deployment_id) == [
        ("gate", "ok"), ("deploy", "info"), ("smoke_test", "ok"), ("traffic", "info"), ("traffic", "ok"),
        ("bake", "ok"), ("promote", "ok"),
    ]  # fmt: skip


def test_canary_walks_the_steps_then_moves_the_aliases_and_keeps_the_old_slot_warm(served, register_version):
    cfg, be, v1 = served
    v2 = register_version(cfg)
    golden = FakeGolden({v1: 80.0, v2: 85.0})
    be.weight_log.clear()

    result = rollout(cfg, actor="bob", reason="new billing data", backend=be, golden=golden)

    assert result.status == "promoted" and result.outcome == f"version {v2} is champion"
    assert _candidate_weights(be, v2) == [10, 50, 100]
    assert alias_version(cfg, CHAMPION) == v2 and alias_version(cfg, PREVIOUS) == v1
    assert sorted(v for v in be.slots.values()) == sorted([v1, v2]), "the old champion stays loaded"
    assert golden.asked == [v1, v2, v2, v2]  # the stable slot once, the candidate after each bake
    with session_scope(cfg.database_url) as s:
        dep = s.get(Deployment, result.deployment_id)
        assert (dep.kind, dep.from_version, dep.actor, dep.reason) == ("promotion", v1, "bob", "new billing data")
        bakes = s.scalars(select(DeploymentEvent).where(DeploymentEvent.step == "bake")).all()
        assert [e.metrics["percent"] for e in bakes[-3:]] == [10, 50, 100]
        rules = {c["rule"]: c["ok"] for c in bakes[-1].metrics["checks"]}
        assert rules == {"health": True, "error_rate": True, "p95_latency": True, "golden_set": True}
        audited = [a.action for a in s.scalars(select(AuditEntry).order_by(AuditEntry.id))]
        assert {"deploy.gate", "deploy.traffic", "deploy.bake", "deploy.promote", "alias.champion",
                "alias.previous"} <= set(audited)  # fmt: skip


@pytest.mark.parametrize(
    ("behaviour", "golden", "rule"),
    [
        (Behaviour(error_rate=0.5), {}, "error rate 50.0%"),
        (Behaviour(p95_ms=3000), {}, "p95 latency 3000 ms"),
        (Behaviour(), {"bad": 10.0}, "golden-set exact match 10.0"),
    ],
)
def test_a_breach_sets_the_candidate_weight_to_zero_and_the_champion_stays(
    served, behaviour, golden, rule, register_version
):
    cfg, be, v1 = served
    v2 = register_version(cfg)
    be.behaviour[v2] = behaviour
    be.weight_log.clear()

    result = rollout(cfg, backend=be, golden=FakeGolden({v2: golden["bad"]} if golden else {}))

    assert result.status == "rolled_back" and rule in result.outcome
    assert _candidate_weights(be, v2) == [10, 0], "rolled back at the first step, never further"
    assert be.serving() == v1
    assert alias_version(cfg, CHAMPION) == v1 and alias_version(cfg, CHALLENGER) == v2
    tags = client(cfg).get_model_version(cfg.registry.model_name, v2).tags
    assert tags["clm.deploy"].startswith("rolled_back: ") and rule in tags["clm.deploy"]
    assert _steps(cfg, result.deployment_id)[-1] == ("rollback", "breach")


def test_a_slot_killed_mid_canary_triggers_the_automatic_rollback(served, register_version):
    cfg, be, v1 = served
    v2 = register_version(cfg)
    be.kill_at_weight = (v2, 50)  # the candidate's slot dies when it gets half the traffic
    be.weight_log.clear()

    result = rollout(cfg, backend=be, golden=None)

    assert result.status == "rolled_back"
    assert "is down" in result.outcome
    assert _candidate_weights(be, v2) == [10, 50, 0]
    assert be.serving() == v1 and alias_version(cfg, CHAMPION) == v1
    with session_scope(cfg.database_url) as s:
        assert history.latest_promotion(s, v2).outcome == result.outcome


def test_blue_green_switches_once_then_bakes(tmp_path, sqlite_url, mlflow_uri, register_version):
    cfg = make_cfg(tmp_path, sqlite_url, mlflow_uri, CLM__DEPLOY__STRATEGY="blue_green")
    be = FakeBackend()
    register_version(cfg)
    rollout(cfg, backend=be, golden=None)
    v2 = register_version(cfg)
    be.weight_log.clear()

    assert rollout(cfg, backend=be, golden=None).status == "promoted"
    assert _candidate_weights(be, v2) == [100]


def test_a_failed_gate_deploys_nothing(served, register_version):
    cfg, be, v1 = served
    register_version(cfg, {"routers": 40.0})
    calls = len(be.calls)

    result = rollout(cfg, backend=be, golden=None)

    assert result.status == "gate_failed" and be.calls[calls:] == []
    assert alias_version(cfg, CHAMPION) == v1 and be.serving() == v1
    assert _steps(cfg, result.deployment_id) == [("gate", "failed")]


def test_a_version_that_does_not_load_fails_clearly_and_nothing_moves(served, register_version):
    cfg, be, v1 = served
    v2 = register_version(cfg)
    be.behaviour[v2] = Behaviour(loads=False)
    weights = be.weights()

    with pytest.raises(DeployError, match=f"version {v2} could not be deployed: .* failed to load; champion {v1}"):
        rollout(cfg, backend=be, golden=None)

    assert be.weights() == weights and be.serving() == v1 and alias_version(cfg, CHAMPION) == v1
    with session_scope(cfg.database_url) as s:
        dep = history.recent(s, 1)[0]
        assert dep.status == "failed" and "failed to load" in dep.outcome


def test_a_champion_that_no_slot_serves_is_brought_up_first_so_the_candidate_gets_a_canary(
    deploy_cfg, register_version
):
    cfg = deploy_cfg
    v1 = register_version(cfg)
    rollout(cfg, backend=FakeBackend(), golden=None)  # serving elsewhere; now a fresh backend knows nothing
    be = FakeBackend()
    v2 = register_version(cfg)

    result = rollout(cfg, backend=be, golden=None)

    assert result.status == "promoted"
    assert ("baseline", "ok") in _steps(cfg, result.deployment_id)
    assert _candidate_weights(be, v2)[-3:] == [10, 50, 100]
    assert alias_version(cfg, PREVIOUS) == v1


def test_alias_strategy_moves_the_champion_without_serving(tmp_path, sqlite_url, mlflow_uri, register_version):
    cfg = make_cfg(tmp_path, sqlite_url, mlflow_uri, CLM__DEPLOY__STRATEGY="alias")
    v1 = register_version(cfg)

    result = rollout(cfg)  # no backend: none may be built

    assert result.status == "promoted" and alias_version(cfg, CHAMPION) == v1
    assert _steps(cfg, result.deployment_id) == [("gate", "ok"), ("promote", "ok")]


def test_a_second_promotion_waits_for_the_first_to_end(served, register_version):
    cfg, be, _ = served
    register_version(cfg)
    with session_scope(cfg.database_url) as s:
        s.add(Deployment(kind="promotion", model_name="m", version="9", strategy="canary", status="canary",
                         actor="x", details={}))  # fmt: skip

    with pytest.raises(DeployBusyError, match=r"version 9\) is still canary: .*`clm rollback`"):
        rollout(cfg, backend=be, golden=None)


def test_a_gated_promotion_that_never_deployed_is_superseded_by_the_next(served, register_version):
    cfg, be, _ = served
    stale = Deployment(kind="promotion", model_name="m", version="9", strategy="canary", status="pending", actor="x")
    with session_scope(cfg.database_url) as s:
        s.add(stale)
    register_version(cfg)

    assert rollout(cfg, backend=be, golden=None).status == "promoted"
    with session_scope(cfg.database_url) as s:
        assert s.get(Deployment, stale.id).status == "superseded"


def test_an_unexpected_error_mid_canary_still_takes_the_candidate_off_traffic(served, register_version):
    cfg, be, v1 = served
    v2 = register_version(cfg)

    class Broken:
        def score(self, backend, slot):
            raise RuntimeError("probe bug")

    with pytest.raises(RuntimeError, match="probe bug"):
        rollout(cfg, backend=be, golden=Broken())

    assert be.serving() == v1 and alias_version(cfg, CHAMPION) == v1
    with session_scope(cfg.database_url) as s:
        dep = history.latest_promotion(s, v2)
        assert dep.status == "rolled_back" and "the rollout could not go on: probe bug" in dep.outcome


def test_a_manual_rollback_during_a_bake_ends_the_rollout_and_the_champion_stays(
    tmp_path, sqlite_url, mlflow_uri, register_version
):
    be = FakeBackend()
    v1 = register_version(make_cfg(tmp_path, sqlite_url, mlflow_uri))
    rollout(make_cfg(tmp_path, sqlite_url, mlflow_uri), backend=be, golden=None)
    cfg = make_cfg(tmp_path, sqlite_url, mlflow_uri, CLM__DEPLOY__BAKE_SECONDS="30")
    v2 = register_version(cfg)
    outcome = {}
    thread = threading.Thread(target=lambda: outcome.update(r=rollout(cfg, backend=be, golden=None)))
    thread.start()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and _candidate_weights(be, v2)[-1:] != [10]:
        time.sleep(0.02)
    t0 = time.monotonic()

    done = rollback(cfg, actor="oncall", reason="customers complain", backend=be)
    thread.join(timeout=20)

    assert time.monotonic() - t0 < 5, "the rollback must not wait for the 30 s bake window"
    assert (done.from_version, done.to_version, done.warm) == (v2, v1, True) and done.aborted_deployment
    assert outcome["r"].status == "aborted" and outcome["r"].champion_after == v1
    assert be.serving() == v1 and alias_version(cfg, CHAMPION) == v1
    with session_scope(cfg.database_url) as s:
        assert "aborted by oncall's rollback: customers complain" in s.get(Deployment, done.aborted_deployment).outcome
