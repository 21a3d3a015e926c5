"""The deploy lock's lease on the database's clock, its heartbeat, and the fencing token checked before each serving
change, on SQLite and PostgreSQL (issue #10, item 7)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import timedelta

import pytest

from clm_lib.config import ConfigError, load_config
from clm_lib.db.models import utcnow
from clm_lib.deploy import lock
from clm_lib.deploy.lock import Lease, LeaseLost, acquire, current_holder, deploy_lock, release, renew, state
from clm_lib.deploy.rollback import rollback
from clm_lib.deploy.rollout import rollout
from clm_lib.registry.mlflow_registry import aliases

from .conftest import make_cfg
from .fakes import FakeBackend


@pytest.mark.parametrize("skew", [timedelta(hours=1), timedelta(hours=-1)], ids=["client-ahead", "client-behind"])
def test_the_clients_clock_does_not_decide_who_holds_the_lock(db_url, monkeypatch, skew):
    skewed = lambda: utcnow() + skew  # noqa: E731
    # A worker whose clock is off by an hour takes the lock, then another (right clock) tries...
    with monkeypatch.context() as m:
        m.setattr("clm_lib.db.models.utcnow", skewed)
        m.setattr(lock, "utcnow", skewed, raising=False)
        first = acquire(db_url, "skewed worker", 60)
    assert first
    assert acquire(db_url, "punctual worker", 60) is None
    assert current_holder(db_url) == "skewed worker"
    # ...and the other way round: a skewed worker cannot see a live lease as expired.
    release(db_url, "skewed worker")
    assert acquire(db_url, "punctual worker", 60)
    with monkeypatch.context() as m:
        m.setattr("clm_lib.db.models.utcnow", skewed)
        m.setattr(lock, "utcnow", skewed, raising=False)
        assert acquire(db_url, "skewed worker", 60) is None
        assert current_holder(db_url) == "punctual worker"


def test_an_expired_lease_goes_to_the_next_holder_with_a_larger_token_and_fences_the_first(db_url):
    first = acquire(db_url, "paused holder", 0.3)  # no heartbeat: a process stopped (SIGSTOP, a long GC pause)
    assert first and acquire(db_url, "next holder", 60) is None
    time.sleep(0.5)

    second = acquire(db_url, "next holder", 60)

    assert second is not None and second > first
    assert state(db_url) == lock.LockState("next holder", second)
    paused = Lease(db_url, "paused holder", first, 0.3)
    with pytest.raises(LeaseLost, match=r"^lost the deploy lock to next holder .*nothing more was changed$"):
        paused.fence()
    assert not renew(db_url, "paused holder", first, 60), "its heartbeat cannot win the lock back"
    release(db_url, "paused holder")  # a late release frees nothing
    assert current_holder(db_url) == "next holder"


def test_a_lease_that_ran_out_while_nobody_took_it_is_still_the_holders(db_url):
    token = acquire(db_url, "slow holder", 0.2)
    time.sleep(0.3)
    assert current_holder(db_url) is None
    Lease(db_url, "slow holder", token, 60).fence()  # same token: nobody held it in between
    assert state(db_url) == lock.LockState("slow holder", token)


def test_the_heartbeat_keeps_a_long_holders_lease(db_url):
    stolen = []
    with deploy_lock(db_url, "a long deploy", wait_seconds=1, lease_seconds=0.4) as lease:
        deadline = time.monotonic() + 1.5  # almost four leases
        while time.monotonic() < deadline:
            if acquire(db_url, "intruder", 60) is not None:
                stolen.append(time.monotonic())
            time.sleep(0.05)
        lease.fence()  # still the holder, same token
        assert state(db_url) == lock.LockState(lease.holder, lease.token)
    assert stolen == []
    assert current_holder(db_url) is None, "released on the way out; the heartbeat stopped"
    time.sleep(0.2)
    assert current_holder(db_url) is None


@dataclass
class _SlowDeploy(FakeBackend):
    """Loading a slot takes three leases (a Kubernetes rollout waiting for its pods); meanwhile another process
    keeps trying to take the lock."""

    url: str = ""
    stolen: int = 0

    def deploy(self, slot, model_version):
        deadline = time.monotonic() + 1.2
        while time.monotonic() < deadline:
            if acquire(self.url, "intruder", 60) is not None:
                self.stolen += 1
                release(self.url, "intruder")
            time.sleep(0.05)
        return super().deploy(slot, model_version)


def test_a_promotion_whose_deploy_outlasts_the_lease_keeps_the_lock(tmp_path, db_url, mlflow_uri, register_version):
    cfg = make_cfg(tmp_path, db_url, mlflow_uri)
    cfg.deploy.lock_lease_seconds = 0.4  # below the config's floor: only the heartbeat keeps it
    be = _SlowDeploy(url=db_url)
    register_version(cfg)

    result = rollout(cfg, backend=be, golden=None)

    assert result.status == "promoted" and be.stolen == 0
    assert [c[0] for c in be.calls].count("deploy") == 1


class _PausingBackend(FakeBackend):
    """``status()`` stalls once (a process paused mid-rollback) while ``during_pause`` runs."""

    during_pause = None

    def status(self):
        if self.during_pause is not None:
            act, self.during_pause = self.during_pause, None
            act()
        return super().status()


def test_a_rollback_that_lost_the_lock_changes_nothing(two_promoted, monkeypatch):
    cfg, be, v1, v2 = two_promoted
    cfg.deploy.lock_lease_seconds = 0.3
    monkeypatch.setattr(lock, "heartbeat_interval", lambda lease: 3600.0)  # the heartbeat stalls with the process
    pausing = _PausingBackend(slots=dict(be.slots), _weights=be.weights())
    calls_before = len(pausing.calls)
    tokens = []

    def another_holder_takes_over():
        time.sleep(0.5)  # the paused rollback's lease runs out...
        tokens.append(acquire(cfg.database_url, "operator's rollback", 60))  # ...and someone else takes the lock

    pausing.during_pause = another_holder_takes_over
    with pytest.raises(LeaseLost, match=r"lost the deploy lock to operator's rollback .*nothing more was changed"):
        rollback(cfg, actor="airflow:otto", reason="paused", backend=pausing)

    assert tokens[0] is not None
    assert pausing.serving() == v2 and pausing.weights() == be.weights()
    assert not [c for c in pausing.calls[calls_before:] if c[0] in ("set_weights", "deploy", "stop")]
    assert aliases(cfg)["champion"] == v2
    assert current_holder(cfg.database_url) == "operator's rollback"
    release(cfg.database_url, "operator's rollback")
    # The next rollback settles the intent the fenced one left, then does the job.
    result = rollback(cfg, actor="airflow:otto", reason="again", backend=pausing)
    assert result.to_version == v1 and pausing.serving() == v1 and aliases(cfg)["champion"] == v1


@pytest.mark.parametrize(
    ("env", "fields"),
    [
        ({"CLM__SERVING__BACKEND": "kubernetes", "CLM__DEPLOY__LOCK_LEASE_SECONDS": "600"},
         ("deploy.lock_lease_seconds (600)", "serving.kubernetes.ready_timeout_s (600 s)")),
        ({"CLM__SERVING__STARTUP_TIMEOUT_S": "1200"},
         ("deploy.lock_lease_seconds (900)", "serving.startup_timeout_s (1200 s)")),
        ({"CLM__SERVING__DRAIN_TIMEOUT_S": "60", "CLM__SERVING__STARTUP_TIMEOUT_S": "30",
          "CLM__DEPLOY__LOCK_LEASE_SECONDS": "60"},
         ("deploy.lock_lease_seconds (60)", "serving.drain_timeout_s (65 s with its 5 s of grace)")),
    ],
)  # fmt: skip
def test_the_config_refuses_a_lease_a_serving_call_could_outlast(tmp_path, env, fields):
    with pytest.raises(ConfigError) as err:
        load_config(environ={"CLM_HOME": str(tmp_path), **env})
    assert all(f in str(err.value) for f in fields), str(err.value)


def test_the_config_accepts_a_lease_longer_than_every_serving_call(tmp_path):
    base = {"CLM_HOME": str(tmp_path)}
    assert load_config(environ=base).deploy.lock_lease_seconds == 900
    k8s = load_config(environ={**base, "CLM__SERVING__BACKEND": "kubernetes", "CLM__DEPLOY__LOCK_LEASE_SECONDS": "601"})
    assert k8s.deploy.lock_lease_seconds == 601
    alias = {**base, "CLM__DEPLOY__STRATEGY": "alias", "CLM__DEPLOY__LOCK_LEASE_SECONDS": "10"}
    assert load_config(environ=alias).deploy.lock_lease_seconds == 10  # no serving calls under it
