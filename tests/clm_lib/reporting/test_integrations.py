"""The Integrations screen's checks, on real stores: reachable, unreachable (with since when and a bounded wait),
not configured, and where each is configured, never showing a password."""

from __future__ import annotations

import socket
import time

from clm_lib.db import upgrade
from clm_lib.reporting.integrations import build_integrations, configured_in
from tests.clm_lib.reporting.test_overview import _cfg


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _by_name(page):
    return {i.name: i for i in page.integrations}


def test_local_stores_reachable_and_the_rest_not_configured(tmp_path, mlflow_uri, clean_env):
    db = f"sqlite:///{tmp_path / 'clm.db'}"
    upgrade(db)
    cfg = _cfg(tmp_path / "home", db_url=db, tracking_uri=mlflow_uri)
    cfg.home.joinpath("lake").mkdir(parents=True)
    found = _by_name(build_integrations(cfg, environ={"CLM__DATABASE__URL": db}))

    assert list(found)[:7] == [
        "MLflow", "clm's database", "Data lake", "Kafka", "Celery broker", "Kubernetes", "GPU nodes",
    ]  # fmt: skip
    assert [found[f"Alerts: {c}"].state for c in ("email", "webhook", "apprise")] == ["not configured"] * 3
    for name in ("MLflow", "clm's database", "Data lake"):
        assert found[name].state == "reachable" and found[name].since is None, found[name]
        assert found[name].latency_ms is not None and found[name].latency_ms >= 0
    assert found["clm's database"].configured_in == "environment $CLM__DATABASE__URL"
    assert found["Data lake"].configured_in == "default (under CLM_HOME)"
    for name in ("Kafka", "Celery broker", "Kubernetes", "GPU nodes"):
        assert found[name].state == "not configured" and found[name].latency_ms is None
    assert "'local'" in found["Kubernetes"].detail and "LocalExecutor" in found["Celery broker"].detail


def test_the_celery_broker_is_checked_under_the_celery_executor_and_its_password_never_shown(tmp_path, clean_env):
    cfg = _cfg(tmp_path / "home", db_url=f"sqlite:///{tmp_path / 'clm.db'}", tracking_uri="http://127.0.0.1:1")
    cfg.server.executor = "celery"
    cfg.server.celery.broker_url = "redis://127.0.0.1:6379/15"  # the Redis of every machine here (STACK.md)
    up = _by_name(build_integrations(cfg, environ={}))["Celery broker"]
    assert (up.state, up.detail, up.configured_in) == ("reachable", "CeleryExecutor, queue default",
                                                       "server.celery.broker_url")  # fmt: skip
    port = _closed_port()
    cfg.server.celery.broker_url = f"redis://:hunter2secret@127.0.0.1:{port}/0"
    down = _by_name(build_integrations(cfg, environ={}))["Celery broker"]
    assert down.state == "unreachable" and down.since is not None and "refused" in down.detail.lower()
    assert down.address == f"redis://:***@127.0.0.1:{port}/0" and "hunter2secret" not in repr(down)


def test_dead_stores_are_unreachable_fast_with_since_and_no_password(tmp_path, clean_env):
    port = _closed_port()
    db = f"postgresql+psycopg2://clm:hunter2secret@127.0.0.1:{port}/clm"
    cfg = _cfg(tmp_path / "home", db_url=db, tracking_uri=f"http://u:tok3nsecret@127.0.0.1:{port}")
    started = time.monotonic()
    first = _by_name(build_integrations(cfg, connection={"CLM_DATABASE_URL": db}, environ={}))
    second = _by_name(build_integrations(cfg, connection={"CLM_DATABASE_URL": db}, environ={}))

    assert time.monotonic() - started < 10
    for name in ("MLflow", "clm's database"):
        assert first[name].state == "unreachable" and first[name].since is not None
        assert second[name].since == first[name].since  # the first failure, not the latest
    assert "hunter2secret" not in repr(first) and "tok3nsecret" not in repr(first)
    assert first["clm's database"].configured_in == "Airflow connection clm_default (extra.database_url)"
    assert first["MLflow"].address == f"http://u:***@127.0.0.1:{port}"


def test_kubernetes_backend_without_a_cluster_is_unreachable_with_the_reason(tmp_path, clean_env, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-kubeconfig"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    cfg = _cfg(tmp_path / "home")
    cfg.serving.backend = "kubernetes"
    cfg.serving.kubernetes.resources = {"limits": {"nvidia.com/gpu": "1"}}
    found = _by_name(build_integrations(cfg, environ={}))

    assert found["Kubernetes"].state == "unreachable" and "Kubernetes configuration" in found["Kubernetes"].detail
    assert found["GPU nodes"].state == "unreachable" and found["GPU nodes"].configured_in.startswith("serving.")


def test_configured_in_follows_the_resolvers_precedence():
    env = {"CLM_DATABASE_URL": "x", "CLM__DATABASE__URL": "y", "CLM_CONFIG": "/etc/clm.yaml"}
    assert configured_in("CLM_DATABASE_URL", False, {"CLM_DATABASE_URL": "z"}, env).startswith("Airflow connection")
    assert configured_in("CLM_DATABASE_URL", False, {}, env) == "environment $CLM__DATABASE__URL"
    assert configured_in("CLM_DATA_URI", False, {}, {"CLM_DATA_URI": "s3://b"}) == "environment $CLM_DATA_URI"
    assert configured_in("MLFLOW_TRACKING_URI", False, {}, env) == "config file /etc/clm.yaml"
    assert configured_in("MLFLOW_TRACKING_URI", True, {}, {}) == "default (under CLM_HOME)"
