"""Where alerts come from: the guard and the canary's automatic rollbacks, a guard breach left serving, a gate
refusal, drift that requests a retraining, stores that stop answering; each one alert per cause."""

from __future__ import annotations

import socket
from datetime import timedelta
from types import SimpleNamespace

import pytest
from sqlalchemy import select

from clm_lib.alerts import sources
from clm_lib.alerts.stores import check_stores
from clm_lib.db import session_scope
from clm_lib.db.models import Alert, utcnow
from clm_lib.deploy.guard import guard
from clm_lib.deploy.rollout import rollout
from tests.clm_lib.deploy.conftest import deploy_cfg  # noqa: F401 - a fixture
from tests.clm_lib.deploy.fakes import Behaviour, FakeBackend


def _alerts(cfg) -> list[tuple[str, str, int]]:
    with session_scope(cfg.database_url) as s:
        return [(a.kind, a.cause, a.count) for a in s.scalars(select(Alert).order_by(Alert.id))]


@pytest.fixture
def two_promoted(deploy_cfg, register_version):  # noqa: F811
    be = FakeBackend()
    v1 = register_version(deploy_cfg)
    rollout(deploy_cfg, backend=be, golden=None)
    v2 = register_version(deploy_cfg)
    rollout(deploy_cfg, backend=be, golden=None)
    return deploy_cfg, be, v1, v2


def test_the_guards_rollback_is_one_rollback_alert(two_promoted):
    cfg, be, _v1, v2 = two_promoted
    be.behaviour[v2] = Behaviour(error_rate=0.5)
    assert guard(cfg, backend=be).rollback is not None
    model = cfg.registry.model_name
    assert _alerts(cfg) == [("rollback", f"rollback:{model}/{v2}", 1)]
    with session_scope(cfg.database_url) as s:
        [a] = s.scalars(select(Alert)).all()
        assert a.severity == "critical" and "by the guard" in a.message and "error rate" in a.message


def test_a_breach_left_serving_is_a_guard_breach_alert(two_promoted):
    cfg, be, _v1, v2 = two_promoted
    cfg.deploy.guard.rollback_after_watch = False
    be.behaviour[v2] = Behaviour(p95_ms=cfg.deploy.rules.max_p95_ms * 2)
    guard(cfg, backend=be, now=utcnow() + timedelta(minutes=cfg.deploy.guard.watch_minutes + 1))
    assert _alerts(cfg) == [("guard_breach", f"guard_breach:{cfg.registry.model_name}/{v2}", 1)]


def test_the_canarys_automatic_rollback_is_an_alert(deploy_cfg, register_version):  # noqa: F811
    be = FakeBackend()
    register_version(deploy_cfg)
    rollout(deploy_cfg, backend=be, golden=None)
    v2 = register_version(deploy_cfg)
    be.kill_at_weight = (v2, 50)
    assert rollout(deploy_cfg, backend=be, golden=None).status == "rolled_back"
    assert _alerts(deploy_cfg) == [("rollback", f"rollback:{deploy_cfg.registry.model_name}/{v2}", 1)]


def test_gate_refusals_and_drift_requests_one_alert_per_cause(deploy_cfg, register_version):  # noqa: F811
    cfg, model = deploy_cfg, deploy_cfg.registry.model_name
    be = FakeBackend()
    register_version(cfg)
    passed = rollout(cfg, backend=be, golden=None)
    assert sources.gate_refused(cfg, passed) is None  # promoted: nothing to say
    register_version(cfg, {"routers": 40.0})
    refused = rollout(cfg, backend=be, golden=None)
    assert refused.status == "gate_failed"
    sources.gate_refused(cfg, refused)
    sources.gate_refused(cfg, refused)
    quiet = SimpleNamespace(retrain=False, check_id="c-0", summary="no drift")
    loud = SimpleNamespace(retrain=True, check_id="c-1", summary="retrain: embedding_mmd: p=0.001")
    assert sources.drift_retrain(cfg, quiet) is None
    sources.drift_retrain(cfg, loud)
    sources.drift_retrain(cfg, loud)
    assert _alerts(cfg) == [("gate_refused", f"gate_refused:{model}/{refused.version}", 2),
                            ("drift_retrain", f"drift_retrain:{model}", 2)]  # fmt: skip


def test_a_store_that_stops_answering_is_alerted_and_resolved_when_it_answers(tmp_path, cfg):
    from clm_lib.db import upgrade

    upgrade(cfg.database_url)
    cfg.home.joinpath("lake").mkdir(parents=True, exist_ok=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    cfg.registry.tracking_uri = f"http://127.0.0.1:{closed}"
    assert list(check_stores(cfg).down) == ["MLflow"]
    check_stores(cfg)
    assert _alerts(cfg) == [("store_unreachable", "store_unreachable:mlflow", 2)]
    cfg.registry.tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    (tmp_path / "mlflow.db").touch()
    assert check_stores(cfg).recovered == ["MLflow"]
    with session_scope(cfg.database_url) as s:
        assert s.scalars(select(Alert)).one().resolved_by == "clm:store-check"
