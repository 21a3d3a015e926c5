"""The OpenAPI document and the docs page of ``/clm/api/v1``: behind the same login as every route (never
anonymous), listing every v1 route, and the Swagger UI served from the installed package (no CDN)."""

from __future__ import annotations

import pytest

API = "/clm/api"
V1 = f"{API}/v1"


@pytest.fixture(scope="module")
def api(airflow_fab):
    from airflow.api_fastapi.app import create_app
    from fastapi.testclient import TestClient

    with TestClient(create_app(apps="core")) as client:
        yield client


def _as(tokens, name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens[name]}"}


@pytest.mark.parametrize(
    "path", ["/openapi.json", "/docs", "/docs/swagger-ui-bundle.js", "/docs/swagger-ui.css", "/docs/favicon.svg"]
)
def test_nothing_answers_anonymously(api, tokens, path):
    assert api.get(V1 + path).status_code == 401
    assert api.get(V1 + path, headers=_as(tokens, "pat")).status_code == 403


@pytest.mark.parametrize("path", ["/docs", "/openapi.json", "/redoc"])
def test_fastapis_own_unprotected_pages_stay_off(api, path):
    assert api.get(API + path).status_code == 404


def test_the_document_lists_every_v1_route(api, tokens):
    from clm_api.app import create_app
    from fastapi.routing import APIRoute

    response = api.get(f"{V1}/openapi.json", headers=_as(tokens, "vic"))

    assert response.status_code == 200
    doc = response.json()
    assert doc["openapi"].startswith("3.") and doc["servers"] == [{"url": API}]
    documented = {(path, method.upper()) for path, ops in doc["paths"].items() for method in ops}
    routes = {
        (r.path, m) for r in create_app().routes if isinstance(r, APIRoute) and r.include_in_schema for m in r.methods
    }
    assert documented == routes
    v1 = {p for p, _ in documented if p.startswith("/v1/")}
    assert {"/v1/deployments", "/v1/deployments/{deployment_id}", "/v1/serving", "/v1/rollback", "/v1/audit",
            "/v1/audit/export", "/v1/audit/verify", "/v1/reports/{version}", "/v1/review", "/v1/review/accept",
            "/v1/review/reject", "/v1/keys", "/v1/keys/{key_id}/revoke"} <= v1  # fmt: skip
    # every v1 route says who may call it: 401/403 come from Airflow's security dependencies
    assert all("security" in op for p, ops in doc["paths"].items() if p.startswith("/v1/") for op in ops.values())


def test_the_docs_page_loads_swagger_ui_from_here(api, tokens):
    page = api.get(f"{V1}/docs", headers=_as(tokens, "vic"))
    bundle = api.get(f"{V1}/docs/swagger-ui-bundle.js", headers=_as(tokens, "vic"))
    css = api.get(f"{V1}/docs/swagger-ui.css", headers=_as(tokens, "vic"))

    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert f"{V1}/openapi.json" in page.text and f"{V1}/docs/swagger-ui-bundle.js" in page.text
    assert "cdn." not in page.text and "https://" not in page.text
    assert bundle.status_code == 200 and "SwaggerUIBundle" in bundle.text[:2000]
    assert css.status_code == 200 and "swagger-ui" in css.text[:5000]
    assert api.get(f"{V1}/docs/../../app.py", headers=_as(tokens, "vic")).status_code == 404
