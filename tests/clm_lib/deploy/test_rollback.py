"""One-click rollback against an in-memory serving backend (a test double, ``fakes.FakeBackend``), a real MLflow
registry and clm's database."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from clm_lib.db import session_scope
from clm_lib.db.models import AuditEntry
from clm_lib.deploy import history
from clm_lib.deploy.rollback import rollback
from clm_lib.deploy.rollout import rollout
from clm_lib.errors import DeployError
from clm_lib.registry.aliases import CHAMPION, PREVIOUS
from clm_lib.registry.mlflow_registry import alias_version

from .conftest import make_cfg
from .fakes import Behaviour, FakeBackend


def test_rollback_flips_traffic_to_the_warm_previous_slot_and_moves_the_aliases(two_promoted):
    cfg, be, v1, v2 = two_promoted
    deploys = [c for c in be.calls if c[0] == "deploy"]

    result = rollback(cfg, actor="oncall", reason="latency complaints", backend=be)

    assert (result.from_version, result.to_version, result.warm, result.aborted_deployment) == (v2, v1, True, None)
    assert [c for c in be.calls if c[0] == "deploy"] == deploys, "a warm rollback loads nothing"
    assert be.serving() == v1 and be.slots[result.slot] == v1
    # v2 was rolled back: it is no default target, so previous names nothing (v1 was the first champion).
    assert alias_version(cfg, CHAMPION) == v1 and alias_version(cfg, PREVIOUS) is None
    with session_scope(cfg.database_url) as s:
        dep = history.load(s, result.deployment_id)
        assert (dep.kind, dep.status, dep.actor) == ("rollback", "completed", "oncall")
        assert dep.reason == "latency complaints"
        assert [(e.step, e.status) for e in history.events_of(s, dep.id)] == [("switch", "ok"), ("aliases", "ok")]
        moves = s.scalars(select(AuditEntry).where(AuditEntry.action == "alias.champion")).all()
        assert (moves[-1].from_value, moves[-1].to_value, moves[-1].actor) == (v2, v1, "oncall")
        assert "rollback: latency complaints" in moves[-1].reason


def test_a_second_default_rollback_never_returns_to_the_rolled_back_version_naming_it_does(two_promoted):
    cfg, be, v1, v2 = two_promoted
    rollback(cfg, backend=be)

    with pytest.raises(DeployError, match=f"every earlier champion was rolled back .*v{v2} rolled back by rollback"):
        rollback(cfg, backend=be)
    assert be.serving() == v1 and alias_version(cfg, CHAMPION) == v1

    again = rollback(cfg, v2, backend=be, reason="it was fine after all")

    assert (again.from_version, again.to_version, again.warm) == (v1, v2, True)
    assert be.serving() == v2 and alias_version(cfg, CHAMPION) == v2
    assert alias_version(cfg, PREVIOUS) is None  # v1 was just rolled back in turn: no default target either


def test_rollback_to_a_named_version_loads_it_into_the_idle_slot_first(two_promoted, register_version):
    cfg, be, v1, v2 = two_promoted
    v3 = register_version(cfg)
    rollout(cfg, backend=be, golden=None)  # 3 serves, 2 is warm, 1 is gone

    result = rollback(cfg, v1, backend=be, reason="back to the known good one")

    assert (result.from_version, result.to_version, result.warm) == (v3, v1, False)
    assert ("deploy", result.slot, v1) in be.calls
    assert be.serving() == v1 and alias_version(cfg, CHAMPION) == v1 and alias_version(cfg, PREVIOUS) == v2


def test_without_a_previous_version_the_error_says_what_to_do(deploy_cfg, register_version):
    be = FakeBackend()
    v1 = register_version(deploy_cfg)
    rollout(deploy_cfg, backend=be, golden=None)

    with pytest.raises(DeployError, match=f"no previous version to roll back to: version {v1} is the first .*--to"):
        rollback(deploy_cfg, backend=be)
    assert be.serving() == v1 and alias_version(deploy_cfg, CHAMPION) == v1


def test_without_a_champion_there_is_nothing_to_roll_back(deploy_cfg):
    with pytest.raises(DeployError, match="nothing to roll back to: clm-assistant has no champion yet"):
        rollback(deploy_cfg, backend=FakeBackend())


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("99", "version 99 never served as champion \\(it was never promoted\\)"),
        ("2", "version 2 is already the champion"),
    ],
)
def test_an_impossible_target_is_refused_and_nothing_moves(two_promoted, target, message):
    cfg, be, _, v2 = two_promoted
    weights = be.weights()

    with pytest.raises(DeployError, match=message):
        rollback(cfg, target, backend=be)

    assert be.weights() == weights and alias_version(cfg, CHAMPION) == v2


def test_a_target_that_does_not_load_leaves_the_champion_serving(two_promoted, register_version):
    cfg, be, v1, _ = two_promoted
    register_version(cfg)
    v3 = rollout(cfg, backend=be, golden=None).version  # 3 serves, 2 is warm, 1 is gone
    be.behaviour[v1] = Behaviour(loads=False)

    with pytest.raises(DeployError, match=f"cannot roll back to version {v1}: .*; champion {v3} keeps serving"):
        rollback(cfg, v1, backend=be)

    assert be.serving() == v3 and alias_version(cfg, CHAMPION) == v3
    with session_scope(cfg.database_url) as s:
        dep = history.recent(s, 1)[0]
        assert (dep.kind, dep.status, dep.version) == ("rollback", "failed", v1)  # the intent row says what failed


def test_alias_strategy_rolls_back_the_aliases_only(tmp_path, sqlite_url, mlflow_uri, register_version):
    cfg = make_cfg(tmp_path, sqlite_url, mlflow_uri, CLM__DEPLOY__STRATEGY="alias")
    v1 = register_version(cfg)
    rollout(cfg)
    v2 = register_version(cfg)
    rollout(cfg)

    result = rollback(cfg)  # no backend may be built

    assert (result.from_version, result.to_version, result.slot) == (v2, v1, None)
    assert alias_version(cfg, CHAMPION) == v1


def test_racing_promotions_and_rollbacks_always_leave_a_served_champion(two_promoted, register_version):
    import threading
    import time

    from clm_lib.deploy.lock import deploy_lock
    from clm_lib.errors import DeployBusyError

    cfg, be, *_ = two_promoted
    seen, errors, stop = [], [], threading.Event()

    def sample() -> None:
        # The invariant, checked all along between the others' steps (under the same lock they change things
        # under): the champion names a version that a slot has loaded.
        while not stop.is_set():
            with deploy_lock(cfg.database_url, "sampler", wait_seconds=60, lease_seconds=60):
                seen.append(alias_version(cfg, CHAMPION) in set(be.slots.values()))
            time.sleep(0.01)

    def promote_twice() -> None:
        for _ in range(2):
            register_version(cfg)
            try:
                rollout(cfg, backend=be, golden=None)
            except DeployBusyError as exc:
                errors.append(str(exc))

    def roll_back_often() -> None:
        for _ in range(6):
            try:
                rollback(cfg, backend=be, reason="race")
            except DeployError as exc:  # busy, or nothing to do: said clearly either way
                errors.append(str(exc))
            time.sleep(0.05)

    threads = [threading.Thread(target=f) for f in (sample, promote_twice, roll_back_often)]
    for t in threads:
        t.start()
    for t in threads[1:]:
        t.join(timeout=120)
    stop.set()
    threads[0].join()

    assert seen and all(seen), f"{seen.count(False)} of {len(seen)} samples saw a champion no slot serves"
    assert be.serving() == alias_version(cfg, CHAMPION)
    ok = ("busy:", "deployment #", "version", "no previous version to roll back to")
    assert all(e.startswith(ok) or "nothing to do" in e for e in errors), errors
