"""A rollback is not an ungated promotion, and a failed MLflow alias write cannot send the next one back to the bad
version (issue #10): the intent row, the history-derived target, and :func:`reconcile_aliases` with each MLflow alias
write failing in turn. A real MLflow registry and clm's database; serving is the in-memory test double."""

from __future__ import annotations

import threading
import time

import mlflow
import pytest
from sqlalchemy import select

from clm_lib.db import session_scope
from clm_lib.db.models import AuditEntry, Deployment
from clm_lib.deploy import history
from clm_lib.deploy.lock import deploy_lock
from clm_lib.deploy.reconcile import reconcile_aliases
from clm_lib.deploy.rollback import rollback
from clm_lib.deploy.rollout import rollout
from clm_lib.errors import DeployError
from clm_lib.registry.aliases import CHAMPION, PREVIOUS
from clm_lib.registry.mlflow_registry import alias_version, client

from .fakes import FakeBackend, FakeGolden


@pytest.fixture
def with_rejected(deploy_cfg, register_version):
    """v1 and v2 promoted; v3 rejected by the canary's golden set at its first step. v2 serves, v3 is warm."""
    be = FakeBackend()
    v1 = register_version(deploy_cfg)
    rollout(deploy_cfg, backend=be, golden=None)
    v2 = register_version(deploy_cfg)
    rollout(deploy_cfg, backend=be, golden=None)
    v3 = register_version(deploy_cfg)
    assert rollout(deploy_cfg, backend=be, golden=FakeGolden({v3: 0.0})).status == "rolled_back"
    return deploy_cfg, be, v1, v2, v3


def test_a_version_the_canary_rejected_cannot_be_rolled_back_to(with_rejected):
    cfg, be, _, v2, v3 = with_rejected
    weights = be.weights()

    with pytest.raises(DeployError) as err:
        rollback(cfg, v3, actor="mallory", reason="force it in", backend=be)

    assert str(err.value).startswith(f"version {v3} never served as champion (rejected by the canary in promotion #3)")
    assert f"""airflow dags trigger clm_promotion -c '{{"version": "{v3}"}}'""" in str(err.value)
    assert be.weights() == weights and be.serving() == v2 and alias_version(cfg, CHAMPION) == v2
    with session_scope(cfg.database_url) as s:
        assert not s.scalars(select(Deployment).where(Deployment.kind == "rollback")).all()


def test_rejected_and_rolled_back_versions_are_marked_in_the_history(with_rejected):
    cfg, be, _v1, v2, v3 = with_rejected
    rollback(cfg, backend=be, reason="v2 got worse")

    with session_scope(cfg.database_url) as s:
        rows = [history.as_dict(d) for d in history.recent(s, 10)]

    assert rows[0]["marks"] == {v2: "rolled back by rollback #4"}
    # Every version a row names carries its mark: v3's rejected promotion started from v2, rolled back since.
    assert rows[1]["marks"] == {v3: "rejected by the canary (promotion #3)", v2: "rolled back by rollback #4"}
    assert rows[-1]["marks"] == {}  # v1: never rolled back


def test_the_intent_row_is_committed_before_traffic_moves_and_the_duration_counts_from_the_call(two_promoted):
    cfg, be, v1, _v2 = two_promoted
    seen: list[tuple] = []
    flip = be.set_weights

    def watched(weights):  # what clm's database says at the moment traffic moves
        with session_scope(cfg.database_url) as s:
            dep = history.recent(s, 1)[0]
            seen.append((dep.kind, dep.status, dep.version))
        flip(weights)

    be.set_weights = watched
    release = threading.Event()

    def hold_the_lock():
        with deploy_lock(cfg.database_url, "a slow promotion step", wait_seconds=5, lease_seconds=30):
            release.wait(5)

    holder = threading.Thread(target=hold_the_lock)
    holder.start()
    time.sleep(0.2)
    threading.Timer(0.4, release.set).start()
    called = time.perf_counter()
    result = rollback(cfg, backend=be, reason="latency")
    took = 1000 * (time.perf_counter() - called)
    holder.join()

    assert seen == [("rollback", "pending", v1)]
    assert 300 <= result.switch_ms <= took  # the wait for the lock is time the bad version kept its traffic
    with session_scope(cfg.database_url) as s:
        dep = history.load(s, result.deployment_id)
        assert dep.status == "completed"
        assert (dep.finished_at - dep.started_at).total_seconds() * 1000 >= 300


@pytest.mark.parametrize("reason", ["bad\x00answers", "ring\x07", "esc \x1b[31m"])
def test_a_reason_with_control_characters_is_refused_before_anything_happens(two_promoted, reason):
    cfg, be, _, v2 = two_promoted

    with pytest.raises(DeployError, match="the reason contains a control character"):
        rollback(cfg, backend=be, reason=reason)

    assert be.serving() == v2
    with session_scope(cfg.database_url) as s:
        assert not s.scalars(select(Deployment).where(Deployment.kind == "rollback")).all()


def test_a_rollback_that_died_before_the_switch_is_settled_by_the_next(two_promoted):
    cfg, be, v1, v2 = two_promoted
    with session_scope(cfg.database_url) as s:  # what a process killed between the intent row and the flip leaves
        dead = history.open_deployment(s, cfg, kind="rollback", version=v1, from_version=v2, strategy="rollback",
                                       status="pending", actor="oncall")  # fmt: skip
        dead_id = dead.id

    result = rollback(cfg, backend=be, reason="again")

    assert result.to_version == v1 and be.serving() == v1
    with session_scope(cfg.database_url) as s:
        dep = history.load(s, dead_id)
        assert (dep.status, dep.outcome) == ("failed", "interrupted before traffic moved")


class _FailingAliasWrites:
    """MLflow alias writes (set and delete) that raise at the given call numbers, counting from 1."""

    def __init__(self, monkeypatch, fail_at: set[int]):
        self.calls, self.fail_at = 0, fail_at
        for name in ("set_registered_model_alias", "delete_registered_model_alias"):
            real = getattr(mlflow.MlflowClient, name)
            monkeypatch.setattr(mlflow.MlflowClient, name, self._wrap(real))

    def _wrap(self, real):
        def write(client_, *args, **kwargs):
            self.calls += 1
            if self.calls in self.fail_at:
                raise mlflow.exceptions.MlflowException(f"alias write {self.calls} refused")
            return real(client_, *args, **kwargs)

        return write


@pytest.fixture
def three_promoted(deploy_cfg, register_version):
    """v1, v2, v3 promoted: champion v3, previous v2."""
    be = FakeBackend()
    versions = []
    for _ in range(3):
        versions.append(register_version(deploy_cfg))
        rollout(deploy_cfg, backend=be, golden=None)
    assert alias_version(deploy_cfg, PREVIOUS) == versions[1]
    return deploy_cfg, be, *versions


@pytest.mark.parametrize("nth", [1, 2])
def test_one_failed_alias_write_is_reconciled_at_once(three_promoted, monkeypatch, nth):
    cfg, be, v1, v2, _v3 = three_promoted
    writes = _FailingAliasWrites(monkeypatch, {nth})

    result = rollback(cfg, backend=be, reason="v3 is bad")  # writes: champion = v2, then previous = v1

    assert result.to_version == v2 and writes.calls > 2
    assert (alias_version(cfg, CHAMPION), alias_version(cfg, PREVIOUS)) == (v2, v1)
    with pytest.raises(DeployError):  # v2 is champion and serves all traffic; v3 is no default
        rollback(cfg, v2, backend=be)
    assert be.serving() == v2


@pytest.mark.parametrize("first_failing", [1, 2])
def test_after_alias_writes_keep_failing_reconcile_sets_them_and_no_default_rollback_reinstalls_the_bad_one(
    three_promoted, monkeypatch, first_failing
):
    cfg, be, v1, v2, v3 = three_promoted
    writes = _FailingAliasWrites(monkeypatch, set(range(first_failing, 100)))

    with pytest.raises(DeployError, match=f"all traffic is on version {v2} .*`clm rollback --reconcile`"):
        rollback(cfg, backend=be, reason="v3 is bad")

    # MLflow is half-written: champion still the bad v3 (first write failed) or previous still v2 = champion.
    stale = (alias_version(cfg, CHAMPION), alias_version(cfg, PREVIOUS))
    assert stale == ((v3, v2) if first_failing == 1 else (v2, v2))
    assert be.serving() == v2
    # The retry (MLflow still failing) sees the aliases disagree with the history: it moves nothing, neither back
    # to v3 nor on to v1, and says so.
    with pytest.raises(DeployError, match=f"disagree with clm's deployment history, which says version {v2} is "
                                          "champion since rollback #4.*could not be set"):  # fmt: skip
        rollback(cfg, backend=be, reason="retry")
    assert be.serving() == v2

    writes.fail_at = set()
    moves = reconcile_aliases(cfg, actor="oncall")

    assert (alias_version(cfg, CHAMPION), alias_version(cfg, PREVIOUS)) == (v2, v1)
    assert {m.alias for m in moves} == ({CHAMPION, PREVIOUS} if first_failing == 1 else {PREVIOUS})
    assert reconcile_aliases(cfg) == []  # idempotent
    again = rollback(cfg, backend=be, reason="v2 too")
    assert (again.from_version, again.to_version) == (v2, v1) and be.serving() == v1
    with session_scope(cfg.database_url) as s:
        audited = s.scalars(select(AuditEntry).where(AuditEntry.actor == "oncall")).all()
        assert {a.action for a in audited} == {f"alias.{m.alias}" for m in moves}


def test_reconcile_leaves_mlflow_alone_without_a_recorded_champion(deploy_cfg, register_version):
    v1 = register_version(deploy_cfg)
    client(deploy_cfg).set_registered_model_alias(deploy_cfg.registry.model_name, CHAMPION, v1)

    assert reconcile_aliases(deploy_cfg) == []
    assert alias_version(deploy_cfg, CHAMPION) == v1
