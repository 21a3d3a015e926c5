"""clm's REST API as Airflow's api-server mounts it (the real ``create_app`` with the plugin loaded from plugins/),
with the FAB auth manager and real users and roles. Serving is out of the picture here (``deploy.strategy:
alias``): the rollback logic with serving is tested in tests/clm_lib/deploy."""

from __future__ import annotations

import pytest

API = "/clm/api"


@pytest.fixture(scope="module")
def api(airflow_fab):
    from airflow.api_fastapi.app import create_app
    from fastapi.testclient import TestClient

    with TestClient(create_app(apps="core")) as client:
        yield client


@pytest.fixture
def registry(airflow_fab, tmp_path, mlflow_uri, monkeypatch):
    """clm's DB and an MLflow registry where version 2 is champion and version 1 previous."""
    import mlflow

    from clm_lib.config import load_config
    from clm_lib.db import upgrade

    monkeypatch.setenv("CLM_DATABASE_URL", f"sqlite:///{tmp_path / 'clm.db'}")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
    monkeypatch.setenv("CLM__DEPLOY__STRATEGY", "alias")
    cfg = load_config()
    upgrade(cfg.database_url)
    c = mlflow.MlflowClient(cfg.tracking_uri, cfg.tracking_uri)
    c.create_registered_model(cfg.registry.model_name)
    for _ in range(2):
        c.create_model_version(cfg.registry.model_name, source="file:///nowhere")
    c.set_registered_model_alias(cfg.registry.model_name, "champion", "2")
    return cfg


@pytest.fixture
def two_champions(airflow_fab, tmp_path, mlflow_uri, monkeypatch, register_version):
    """v1 then v2 promoted through the rollout (``alias`` strategy), like the UI tests' ``two_champions``: a rollback
    only returns to a version that served as champion (issue #10)."""
    from clm_lib.config import load_config
    from clm_lib.db import upgrade
    from clm_lib.deploy.rollout import rollout

    monkeypatch.setenv("CLM_DATABASE_URL", f"sqlite:///{tmp_path / 'clm.db'}")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
    monkeypatch.setenv("CLM__DEPLOY__STRATEGY", "alias")
    cfg = load_config()
    upgrade(cfg.database_url)
    for _ in range(2):
        register_version(cfg)
        assert rollout(cfg).status == "promoted"
    assert _champion(cfg) == "2"
    return cfg


def _as(tokens, name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens[name]}"}


def _champion(cfg) -> str | None:
    from clm_lib.registry.mlflow_registry import alias_version

    return alias_version(cfg, "champion")


@pytest.mark.parametrize(("method", "path"), [("get", "/deployments"), ("get", "/serving"), ("post", "/rollback")])
def test_every_route_needs_a_token(api, method, path):
    response = getattr(api, method)(API + path)

    assert response.status_code == 401
    assert response.json() == {"detail": "Not authenticated"}


def test_an_invalid_token_is_refused(api):
    response = api.get(f"{API}/deployments", headers={"Authorization": "Bearer not-a-jwt"})

    assert response.status_code == 403  # Airflow's answer to a token it cannot validate


def test_a_user_without_read_access_cannot_read(api, tokens):
    assert api.get(f"{API}/deployments", headers=_as(tokens, "pat")).status_code == 403


def test_a_viewer_reads_but_cannot_roll_back(api, tokens, registry):
    headers = _as(tokens, "vic")

    assert api.get(f"{API}/deployments", headers=headers).json() == {"deployments": []}
    serving = api.get(f"{API}/serving", headers=headers).json()
    assert serving["aliases"] == {"champion": "2", "previous": None, "challenger": None}
    assert serving["strategy"] == "alias" and serving["active_deployment"] is None
    response = api.post(f"{API}/rollback", json={"to_version": "1"}, headers=headers)
    assert response.status_code == 403
    assert _champion(registry) == "2"


def test_no_previous_version_is_a_409_that_says_what_to_do(api, tokens, registry):
    response = api.post(f"{API}/rollback", json={"reason": "bad answers"}, headers=_as(tokens, "otto"))

    assert response.status_code == 409
    assert "no previous version to roll back to" in response.json()["detail"]
    assert "--to VERSION" in response.json()["detail"]


@pytest.mark.parametrize("user", ["otto", "ada"])
def test_an_operator_or_admin_rolls_back_and_is_named_in_the_audit_log(api, tokens, two_champions, user):
    from clm_lib import audit
    from clm_lib.db import session_scope

    registry = two_champions

    response = api.post(f"{API}/rollback", json={"to_version": "1", "reason": "bad answers"}, headers=_as(tokens, user))

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["from_version"], body["to_version"], body["slot"]) == ("2", "1", None)
    assert _champion(registry) == "1"
    with session_scope(registry.database_url) as s:
        move = audit.recent(s, action="alias.champion")[0]
        assert (move.actor, move.from_value, move.to_value) == (f"airflow:{user}", "2", "1")
        assert move.reason == "rollback: bad answers"
    detail = api.get(f"{API}/deployments/{body['deployment_id']}", headers=_as(tokens, "vic")).json()
    assert detail["kind"] == "rollback" and [e["step"] for e in detail["events"]] == ["switch", "aliases"]


@pytest.mark.parametrize(
    ("body", "field"),
    [({"to_version": "latest"}, "to_version"), ({"reason": "x", "force": True}, "force"), ("{not json", None)],
)
def test_a_malformed_request_is_a_422_and_changes_nothing(api, tokens, registry, body, field):
    headers = _as(tokens, "otto")
    if isinstance(body, str):
        response = api.post(f"{API}/rollback", content=body, headers=headers | {"Content-Type": "application/json"})
    else:
        response = api.post(f"{API}/rollback", json=body, headers=headers)

    assert response.status_code == 422
    if field:
        assert field in str(response.json()["detail"])
    assert _champion(registry) == "2"


def test_an_unknown_deployment_is_a_404(api, tokens, registry):
    response = api.get(f"{API}/deployments/12345", headers=_as(tokens, "vic"))

    assert response.status_code == 404 and response.json() == {"detail": "no deployment #12345"}


def test_a_rollback_while_a_promotion_step_holds_the_lock_is_a_409_busy(api, tokens, registry, monkeypatch):
    from clm_lib.deploy.lock import release, try_acquire

    monkeypatch.setenv("CLM__DEPLOY__LOCK_WAIT_SECONDS", "0.2")
    assert try_acquire(registry.database_url, "deploy of version 3 by clm_promotion", 60)
    try:
        response = api.post(f"{API}/rollback", json={"to_version": "1"}, headers=_as(tokens, "otto"))
    finally:
        release(registry.database_url, "deploy of version 3 by clm_promotion")

    assert response.status_code == 409
    assert response.json()["detail"].startswith("busy: deploy of version 3 by clm_promotion is changing what serves")
    assert _champion(registry) == "2"


@pytest.mark.parametrize("path", ["/docs", "/openapi.json"])
def test_no_schema_or_docs_page_answers_without_a_login(api, path):
    assert api.get(API + path).status_code == 404


def test_a_viewer_verifies_the_audit_chain(api, tokens, registry):
    from clm_lib import audit
    from clm_lib.db import session_scope

    assert api.get(f"{API}/audit/verify").status_code == 401
    with session_scope(registry.database_url) as s:
        audit.record(s, action="alias.champion", target="clm-assistant@champion", to_value="2")
    body = api.get(f"{API}/audit/verify", headers=_as(tokens, "vic")).json()
    assert (body["ok"], body["checked"], body["broken_id"]) == (True, 1, None)
    assert api.get(f"{API}/audit/verify", headers=_as(tokens, "pat")).status_code == 403
