"""Who may do what: every route of clm's REST API and every screen and button of the plugin, as each role, against
the table in docs/reliability.md ("Fuzzing and access control"). A refused request changes nothing: clm's
database (every table, row for row) and MLflow's aliases are the same before and after. An allowed rollback does
change them, so the check that nothing changed could fail.

Roles are real FAB users in a real Airflow metadata DB (tests/plugins/conftest.py); "anonymous" sends no token.
Rollbacks run with ``deploy.strategy: alias`` between two versions that both served as champion."""

from __future__ import annotations

import hashlib
import re
from urllib.parse import urlsplit

import pytest

from tests.plugins import config_rbac

ROLES = {"anonymous": None, "public": "pat", "viewer": "vic", "user": "uma", "operator": "otto", "admin": "ada"}
READ, OPERATE, REVIEW = "read", "operate", "review"
"""What a route needs: view access to the UI and DAGs (Viewer and above); the right to trigger ``clm_rollback``
(User and above), or ``clm_ingest`` (the review queue's decisions: User and above). Public (a FAB role without
permissions) has none of them."""
MAY = {
    "anonymous": set(),
    "public": set(),
    "viewer": {READ},
    "user": {READ, OPERATE, REVIEW},
    "operator": {READ, OPERATE, REVIEW},
    "admin": {READ, OPERATE, REVIEW},
}
NO_SUCH_ID = 987654321
"""A review item no queue holds: a decision on it passes the access check, then changes nothing (404)."""

# surface, method, route as the app declares it, needs, the path sent, the status when allowed.
# A refusal is: REST 401 without a token, else 403; screens: a redirect to the login page without a token, else the
# 403 page. Mutations, when allowed, are checked for their effect (test_rbac_matrix); refused, for none.
ROUTES = [
    ("rest", "GET", "/v1/deployments", READ, "/v1/deployments", 200),
    ("rest", "GET", "/v1/deployments/{deployment_id}", READ, "/v1/deployments/1", 200),
    ("rest", "GET", "/v1/serving", READ, "/v1/serving", 200),
    ("rest", "POST", "/v1/rollback", OPERATE, "/v1/rollback", 200),
    ("rest", "GET", "/v1/promotion/next", READ, "/v1/promotion/next", 200),
    # Allowed, it triggers clm_promotion through Airflow's REST API (a closed port here): 503, nothing recorded.
    ("rest", "POST", "/v1/promote", OPERATE, "/v1/promote", 503),
    ("rest", "GET", "/v1/audit", READ, "/v1/audit", 200),
    ("rest", "GET", "/v1/audit/export", READ, "/v1/audit/export?format=csv", 200),
    ("rest", "GET", "/v1/audit/verify", READ, "/v1/audit/verify", 200),
    ("rest", "GET", "/v1/reports/{version}", READ, "/v1/reports/1", 200),
    ("rest", "GET", "/v1/models", READ, "/v1/models", 200),
    ("rest", "GET", "/v1/models/compare", READ, "/v1/models/compare?a=1&b=2", 200),
    ("rest", "GET", "/v1/models/{version}", READ, "/v1/models/1", 200),
    ("rest", "GET", "/v1/models/{version}/lineage", READ, "/v1/models/2/lineage", 200),
    ("rest", "GET", "/v1/aliases", READ, "/v1/aliases", 200),
    ("rest", "GET", "/v1/aliases/history", READ, "/v1/aliases/history?alias=champion", 200),
    ("rest", "GET", "/v1/review", READ, "/v1/review", 200),
    ("rest", "POST", "/v1/review/accept", REVIEW, "/v1/review/accept", 404),
    ("rest", "POST", "/v1/review/reject", REVIEW, "/v1/review/reject", 404),
    ("rest", "GET", "/v1/keys", OPERATE, "/v1/keys", 200),
    ("rest", "POST", "/v1/keys", OPERATE, "/v1/keys", 201),
    ("rest", "POST", "/v1/keys/{key_id}/revoke", OPERATE, "/v1/keys/{key_id}/revoke", 200),
    ("rest", "GET", "/v1/ingestion/batches", READ, "/v1/ingestion/batches", 200),
    ("rest", "GET", "/v1/ingestion/batches/{batch_id}", READ, "/v1/ingestion/batches/nosuchbatch", 404),
    ("rest", "GET", "/v1/ingestion/summary", READ, "/v1/ingestion/summary", 200),
    # Allowed, the matrix sends no body, so no content type: 415 before anything is read or ingested.
    ("rest", "POST", "/v1/ingest", REVIEW, "/v1/ingest", 415),
    ("rest", "GET", "/v1/quarantine", READ, "/v1/quarantine", 200),
    ("rest", "GET", "/v1/validation", READ, "/v1/validation", 200),
    ("rest", "GET", "/v1/validation/expectations", READ, "/v1/validation/expectations", 200),
    ("rest", "GET", "/v1/validation/{batch_id}", READ, "/v1/validation/nosuchbatch", 404),
    ("rest", "GET", "/v1/data/tables", READ, "/v1/data/tables", 200),
    ("rest", "GET", "/v1/data/tables/{table}/history", READ, "/v1/data/tables/curated/history", 200),
    ("rest", "GET", "/v1/data/tables/{table}/diff", READ, "/v1/data/tables/curated/diff?from=0&to=0", 404),
    ("rest", "GET", "/v1/data/tables/{table}/versions/{version}/runs", READ, "/v1/data/tables/curated/versions/0/runs",
     404),
    # Allowed, the body is missing (the matrix sends none): 422 before the lake is touched.
    ("rest", "POST", "/v1/data/tables/{table}/restore", REVIEW, "/v1/data/tables/curated/restore", 422),
    ("rest", "GET", "/v1/overview", READ, "/v1/overview", 200),
    ("rest", "GET", "/v1/health", READ, "/v1/health", 200),
    ("rest", "GET", "/v1/alerts", READ, "/v1/alerts", 200),
    ("rest", "GET", "/v1/alerts/{alert_id}", READ, "/v1/alerts/987654321", 404),
    ("rest", "POST", "/v1/alerts/{alert_id}/ack", OPERATE, "/v1/alerts/987654321/ack", 404),
    ("rest", "POST", "/v1/alerts/{alert_id}/resolve", OPERATE, "/v1/alerts/987654321/resolve", 404),
    ("rest", "GET", "/v1/integrations", READ, "/v1/integrations", 200),
    ("rest", "GET", "/v1/getting-started", READ, "/v1/getting-started", 200),
    ("rest", "GET", "/v1/performance/matrix", READ, "/v1/performance/matrix", 200),
    ("rest", "GET", "/v1/performance/serving", READ, "/v1/performance/serving", 200),
    ("rest", "GET", "/v1/performance/drift", READ, "/v1/performance/drift", 200),
    ("rest", "GET", "/v1/training/runs", READ, "/v1/training/runs", 200),
    ("rest", "GET", "/v1/training/runs/{run_id}", READ, "/v1/training/runs/nosuchrun", 404),
    ("rest", "GET", "/v1/training/runs/{run_id}/strategy", READ, "/v1/training/runs/nosuchrun/strategy", 404),
    ("rest", "GET", "/v1/training/schedule", READ, "/v1/training/schedule", 200),
    ("rest", "GET", "/v1/strategy/history", READ, "/v1/strategy/history", 200),
    ("rest", "GET", "/v1/strategy/domain", READ, "/v1/strategy/domain", 200),
    ("rest", "GET", "/v1/tasks", READ, "/v1/tasks", 200),
    ("rest", "GET", "/v1/tasks/impact", READ, "/v1/tasks/impact?add=solar", 200),
    ("rest", "GET", "/v1/tasks/{task}", READ, "/v1/tasks/routers", 200),
    ("rest", "GET", "/v1/tasks/{task}/impact", READ, "/v1/tasks/routers/impact", 200),
    # Allowed, the body is missing (the matrix sends none): 422 before anything is changed or triggered.
    ("rest", "POST", "/v1/tasks", OPERATE, "/v1/tasks", 422),
    ("rest", "POST", "/v1/tasks/{task}/remove", OPERATE, "/v1/tasks/routers/remove", 422),
    # Allowed, it asks Airflow's REST API, which this module points at a closed port: 503, nothing recorded.
    ("rest", "POST", "/v1/training/retrain", OPERATE, "/v1/training/retrain", 503),
    ("rest", "GET", "/v1/config", READ, "/v1/config", 200),
    ("rest", "GET", "/v1/config/revisions", READ, "/v1/config/revisions", 200),
    ("rest", "GET", "/v1/config/revisions/{number}", READ, "/v1/config/revisions/1", 200),
    ("rest", "GET", "/v1/config/diff", READ, "/v1/config/diff?a=1&b=2", 200),
    ("rest", "POST", "/v1/config/preview", OPERATE, "/v1/config/preview", 200),
    ("rest", "POST", "/v1/config", OPERATE, "/v1/config", 201),
    ("rest", "POST", "/v1/config/revert", OPERATE, "/v1/config/revert", 201),
    ("rest", "GET", "/v1/openapi.json", READ, "/v1/openapi.json", 200),
    ("rest", "GET", "/v1/docs", READ, "/v1/docs", 200),
    ("rest", "GET", "/v1/docs/{asset}", READ, "/v1/docs/swagger-ui.css", 200),
    ("rest", "GET", "/deployments", READ, "/deployments", 200),
    ("rest", "GET", "/deployments/{deployment_id}", READ, "/deployments/1", 200),
    ("rest", "GET", "/serving", READ, "/serving", 200),
    ("rest", "GET", "/audit/verify", READ, "/audit/verify", 200),
    ("rest", "POST", "/rollback", OPERATE, "/rollback", 200),
    ("screen", "GET", "/clm/", READ, "/clm/", 200),
    ("screen", "GET", "/clm/drift", READ, "/clm/drift", 200),
    ("screen", "GET", "/clm/performance", READ, "/clm/performance", 200),
    ("screen", "GET", "/clm/serving", READ, "/clm/serving", 200),
    ("screen", "GET", "/clm/serving/rollback", OPERATE, "/clm/serving/rollback", 302),
    ("screen", "POST", "/clm/serving/rollback", OPERATE, "/clm/serving/rollback", 303),
    ("screen", "GET", "/clm/serving/promote", OPERATE, "/clm/serving/promote", 302),
    ("screen", "POST", "/clm/serving/promote", OPERATE, "/clm/serving/promote", 503),
    ("screen", "GET", "/clm/ingestion", READ, "/clm/ingestion", 200),
    ("screen", "GET", "/clm/data", READ, "/clm/data", 200),
    ("screen", "GET", "/clm/data/restore", REVIEW, "/clm/data/restore", 302),
    # Allowed, the form names no version: refused (400) before the lake is touched.
    ("screen", "POST", "/clm/data/restore", REVIEW, "/clm/data/restore", 400),
    ("screen", "GET", "/clm/validation", READ, "/clm/validation", 200),
    ("screen", "GET", "/clm/validation/<batch_id>", READ, "/clm/validation/nosuchbatch", 404),
    ("screen", "GET", "/clm/validation/<batch_id>/data-docs", READ, "/clm/validation/nosuchbatch/data-docs", 404),
    ("screen", "GET", "/clm/audit", READ, "/clm/audit", 200),
    ("screen", "GET", "/clm/report/<version>", READ, "/clm/report/1", 200),
    ("screen", "GET", "/clm/models", READ, "/clm/models", 200),
    ("screen", "GET", "/clm/models/compare", READ, "/clm/models/compare?a=1&b=2", 200),
    ("screen", "GET", "/clm/models/<version>", READ, "/clm/models/2", 200),
    ("screen", "GET", "/clm/review", READ, "/clm/review", 200),
    ("screen", "GET", "/clm/review/decide", REVIEW, "/clm/review/decide", 302),
    ("screen", "POST", "/clm/review/decide", REVIEW, "/clm/review/decide", 409),
    ("screen", "GET", "/clm/training", READ, "/clm/training", 200),
    ("screen", "GET", "/clm/training/retrain", OPERATE, "/clm/training/retrain", 302),
    ("screen", "POST", "/clm/training/retrain", OPERATE, "/clm/training/retrain", 503),
    ("screen", "GET", "/clm/strategy", READ, "/clm/strategy", 200),
    ("screen", "GET", "/clm/tasks", READ, "/clm/tasks", 200),
    ("screen", "GET", "/clm/tasks/add", READ, "/clm/tasks/add?name=solar", 200),
    ("screen", "GET", "/clm/tasks/add/confirm", OPERATE, "/clm/tasks/add/confirm", 302),
    # Allowed, the form names no task: refused (400) before anything is stored.
    ("screen", "POST", "/clm/tasks/add/confirm", OPERATE, "/clm/tasks/add/confirm", 400),
    ("screen", "GET", "/clm/tasks/<task>", READ, "/clm/tasks/routers", 200),
    ("screen", "GET", "/clm/tasks/<task>/remove", OPERATE, "/clm/tasks/routers/remove", 302),
    # Allowed, the champion here has no per-task adapters: refused (409) before Airflow is asked.
    ("screen", "POST", "/clm/tasks/<task>/remove", OPERATE, "/clm/tasks/routers/remove", 409),
    ("screen", "GET", "/clm/alerts", READ, "/clm/alerts", 200),
    ("screen", "GET", "/clm/alerts/<int:alert_id>/ack", OPERATE, "/clm/alerts/987654321/ack", 302),
    ("screen", "POST", "/clm/alerts/<int:alert_id>/ack", OPERATE, "/clm/alerts/987654321/ack", 404),
    ("screen", "GET", "/clm/alerts/<int:alert_id>/resolve", OPERATE, "/clm/alerts/987654321/resolve", 302),
    ("screen", "POST", "/clm/alerts/<int:alert_id>/resolve", OPERATE, "/clm/alerts/987654321/resolve", 404),
    ("screen", "GET", "/clm/integrations", READ, "/clm/integrations", 200),
    ("screen", "GET", "/clm/getting-started", READ, "/clm/getting-started", 200),
    ("screen", "GET", "/clm/config", READ, "/clm/config", 200),
    ("screen", "GET", "/clm/config/history", READ, "/clm/config/history?a=1&b=2", 200),
    ("screen", "GET", "/clm/config/preview", OPERATE, "/clm/config/preview", 302),
    ("screen", "POST", "/clm/config/preview", OPERATE, "/clm/config/preview", 200),
    ("screen", "GET", "/clm/config/save", OPERATE, "/clm/config/save", 302),
    ("screen", "POST", "/clm/config/save", OPERATE, "/clm/config/save", 303),
    ("screen", "GET", "/clm/config/revert", OPERATE, "/clm/config/revert", 302),
    ("screen", "POST", "/clm/config/revert", OPERATE, "/clm/config/revert", 303),
]
REST_PREFIX = "/clm/api"


def _id(route) -> str:
    return f"{route[0]}:{route[1]}:{route[2]}"


@pytest.fixture(scope="module")
def clm_state(airflow_fab, tmp_path_factory, _mlflow_template):
    """clm's DB and MLflow for the module: versions 1 and 2 both promoted (2 is champion); serving ports closed."""
    import shutil

    from clm_lib.config import load_config
    from clm_lib.db import upgrade
    from clm_lib.deploy.rollout import rollout
    from tests.clm_lib.reporting.serving_history import serving_ports_env
    from tests.plugins.clm_api.test_fuzz import _register

    root = tmp_path_factory.mktemp("rbac")
    shutil.copy(_mlflow_template, root / "mlflow.db")
    env = {
        "CLM_DATABASE_URL": f"sqlite:///{root / 'clm.db'}",
        "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
        "CLM__DEPLOY__STRATEGY": "alias",
        "CLM_AIRFLOW_URL": "http://127.0.0.1:9",  # "retrain now" finds no Airflow there (the discard port is closed)
        **serving_ports_env(),
    }
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        cfg = load_config()
        upgrade(cfg.database_url)
        for _ in range(2):
            _register(cfg)
            rollout(cfg)
        config_rbac.seed(cfg)
        yield cfg


@pytest.fixture(scope="module")
def api(clm_state):
    from airflow.api_fastapi.app import create_app
    from fastapi.testclient import TestClient

    with TestClient(create_app(apps="core")) as client:
        yield client


def snapshot(cfg) -> dict[str, object]:
    """Every table of clm's DB (row count and a digest of its rows) and the registry's aliases."""
    from sqlalchemy import func, select

    from clm_lib.db import session_scope
    from clm_lib.db.models import Base
    from clm_lib.registry.mlflow_registry import alias_version

    state: dict[str, object] = {}
    with session_scope(cfg.database_url) as s:
        for table in Base.metadata.sorted_tables:
            rows = s.execute(select(table)).all()
            state[table.name] = (s.scalar(select(func.count()).select_from(table)),
                                 hashlib.sha256(repr(sorted(map(repr, rows))).encode()).hexdigest())  # fmt: skip
    for alias in ("champion", "previous", "challenger"):
        state[f"alias:{alias}"] = alias_version(cfg, alias)
    return state


def _other_version(cfg) -> str:
    from clm_lib.registry.mlflow_registry import alias_version

    return "1" if alias_version(cfg, "champion") == "2" else "2"


def _form_token(flask_app, fab_user, name: str) -> str:
    """A valid form token for ``name``: a refusal must come from the role, not from a missing token."""
    from clm_ui import csrf

    with flask_app.test_request_context():
        return csrf.form_token(fab_user(name))


def _call(route, role, *, api, client, tokens, flask_app, fab_user, cfg, key_id: int):
    surface, method, _, _, path, _ = route
    user = ROLES[role]
    reason = f"rbac test as {role}"
    path = path.replace("{key_id}", str(key_id))
    if surface == "rest":
        headers = {"Authorization": f"Bearer {tokens[user]}"} if user else {}
        body = None
        if path.endswith("/rollback"):
            body = {"to_version": _other_version(cfg), "reason": reason}
        elif path.endswith(("/accept", "/reject")):
            body = {"ids": [NO_SUCH_ID], "reason": reason}
        elif path == "/v1/keys" and method == "POST":
            body = {"owner": f"rbac-{role}", "scopes": ["infer"]}
        elif path.endswith(("/revoke", "/retrain")):
            body = {"reason": reason}
        elif path.endswith("/promote"):
            body = {"version": _other_version(cfg), "reason": reason}
        elif path.startswith("/v1/config") and method == "POST":
            body = config_rbac.rest_body(cfg, path, reason)
        return api.request(method, REST_PREFIX + path, json=body, headers=headers)
    if user:
        client.set_cookie("_token", tokens[user], domain="localhost")
    if method == "POST":
        token = _form_token(flask_app, fab_user, user) if user else ""
        form = {"clm_csrf": token, "reason": reason}
        if path.endswith("/rollback"):
            form["to_version"] = _other_version(cfg)
        elif path.endswith("/promote"):
            form["version"] = _other_version(cfg)
        elif path.startswith("/clm/config"):
            form |= config_rbac.form(cfg, path)
        else:
            form |= {"decision": "accept", "ids": str(NO_SUCH_ID)}
        return client.post(path, data=form, headers={"Origin": "http://localhost"})
    return client.get(path)


def _active_key(cfg) -> int:
    from clm_lib.serving.keys import create_key

    return create_key(cfg.database_url, owner="rbac-revoke-target", scopes="infer", actor="test")[0].id


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("route", ROUTES, ids=[_id(r) for r in ROUTES])
def test_rbac_matrix(route, role, api, client, tokens, flask_app, fab_user, clm_state):
    surface, method, _, needs, path, allowed_status = route
    cfg = clm_state
    allowed = needs in MAY[role]
    key_id = _active_key(cfg) if "{key_id}" in path else 0
    before = snapshot(cfg)
    target = _other_version(cfg)

    response = _call(route, role, api=api, client=client, tokens=tokens, flask_app=flask_app, fab_user=fab_user,
                     cfg=cfg, key_id=key_id)  # fmt: skip

    after = snapshot(cfg)
    text = response.text
    if allowed:
        assert response.status_code == allowed_status, text[:500]
    elif role == "anonymous":
        if surface == "rest":
            assert response.status_code == 401, text[:500]
        else:
            assert response.status_code == 302
            assert urlsplit(response.headers["Location"]).path == "/auth/login/"
    else:
        assert response.status_code == 403, text[:500]
        if surface == "screen":
            assert "You are not allowed to see this page" in text
    changed = {k for k in before if before[k] != after[k]}
    if not allowed or allowed_status not in (200, 201, 303):
        assert not changed, f"{_id(route)} as {role} changed {sorted(changed)}"
    elif path.endswith("/rollback") and method == "POST":
        assert after["alias:champion"] == target, "an allowed rollback moves the champion"
        assert after["deployments"][0] == before["deployments"][0] + 1
        assert after["audit_log"][0] > before["audit_log"][0]
        from clm_lib.db import session_scope
        from clm_lib.deploy import history

        with session_scope(cfg.database_url) as s:
            last = history.recent(s, 1)[0]
            assert (last.kind, last.actor) == ("rollback", f"airflow:{ROLES[role]}")
    elif "/config" in path and method == "POST":  # a revision and its audit entry, none for a preview
        assert changed == config_rbac.expected_change(path), changed
    elif method == "POST":  # keys: created or revoked, and audited
        assert {"serving_api_keys", "audit_log"} <= changed, changed
    else:
        assert not changed, f"reading {_id(route)} as {role} changed {sorted(changed)}"


def test_the_matrix_names_every_route_and_screen(flask_app):
    """A route added to the API or a screen added to the plugin must get its row above (and in the docs)."""
    from clm_api.app import create_app
    from fastapi.routing import APIRoute

    declared = {(r[0], r[1], r[2]) for r in ROUTES}
    rest = {("rest", m, r.path) for r in create_app().routes if isinstance(r, APIRoute) for m in r.methods}
    screens = {
        ("screen", m, rule.rule)
        for rule in flask_app.url_map.iter_rules()
        if rule.rule.startswith("/clm/") and not rule.endpoint.endswith("static")
        for m in rule.methods - {"HEAD", "OPTIONS"}
    }
    assert rest | screens == declared


@pytest.mark.parametrize("role", ["viewer", "user", "operator", "admin"])
def test_the_rollback_button_is_shown_exactly_to_who_may_use_it(role, client, tokens, clm_state):
    client.set_cookie("_token", tokens[ROLES[role]], domain="localhost")
    html = client.get("/clm/serving").text

    has_form = bool(re.search(r'<form method="post" action="/pluginsv2/clm/serving/rollback"', html))
    assert has_form == (OPERATE in MAY[role])
    assert ('name="clm_csrf"' in html) == has_form
    if not has_form:
        assert "needs permission to trigger <code>clm_rollback</code>" in html
