"""``/clm/api/v1`` overview, health, alerts, integrations and getting-started routes, with the FAB auth manager and
real users, on a seeded clm database."""

from __future__ import annotations

import pytest

from tests.clm_lib.reporting.conftest import seed_history
from tests.clm_lib.reporting.test_overview_health import add_failures
from tests.plugins.helpers import bearer

API = "/clm/api/v1"
ROUTES = ["/overview", "/health", "/alerts", "/integrations", "/getting-started"]
SECRET = "hunter2secret"


@pytest.fixture
def seeded(tmp_path, monkeypatch) -> str:
    from clm_lib.db import upgrade

    url = f"sqlite:///{tmp_path / 'clm.db'}"
    upgrade(url)
    seed_history(url)
    add_failures(url)
    monkeypatch.setenv("CLM_DATABASE_URL", url)
    return url


@pytest.mark.parametrize("route", ROUTES)
def test_every_route_needs_a_reader(api, tokens, seeded, route):
    assert api.get(API + route).status_code == 401
    assert api.get(API + route, headers=bearer(tokens, "pat")).status_code == 403
    assert api.get(API + route, headers=bearer(tokens, "vic")).status_code == 200


def test_overview_has_the_screens_numbers(api, tokens, seeded):
    o = api.get(f"{API}/overview", headers=bearer(tokens, "vic")).json()

    assert [p["model_version"] for p in o["trend"]] == ["1", "2", "3"]
    assert o["trend"][2]["backward_transfer"] == -12.5
    assert {h["stage"]: h["state"] for h in o["health"]} == {
        "ingestion": "failing", "drift": "failing", "training": "failing", "serving": "failing"
    }  # fmt: skip
    assert o["matrix"]["tasks"] == ["routers", "billing", "thermostats"] and o["ingestion"]["committed_batches"] == 2
    assert o["alerts"][0]["kind"] == "guard_breach" and not o["is_fresh_install"]  # recorded now: newest


def test_health_and_alerts_page_and_filter(api, tokens, seeded):
    viewer = bearer(tokens, "vic")
    stages = api.get(f"{API}/health", headers=viewer).json()["stages"]
    assert stages[0]["stage"] == "ingestion" and stages[0]["failures_since_success"] == 2

    page = api.get(f"{API}/alerts", headers=viewer, params={"limit": 2}).json()
    assert (page["total"], len(page["items"]), page["limit"]) == (5, 2, 2)
    later = api.get(f"{API}/alerts", headers=viewer, params={"offset": 2, "limit": 50}).json()
    assert len(later["items"]) == 3 and later["items"][0]["last_seen"] <= page["items"][1]["last_seen"]
    only = api.get(f"{API}/alerts", headers=viewer, params={"kind": "gate_refused"}).json()
    assert [a["cause"] for a in only["items"]] == ["gate_refused:clm-assistant/3"]


def test_bad_filters_are_422_naming_the_field(api, tokens, seeded):
    response = api.get(f"{API}/alerts", headers=bearer(tokens, "vic"), params={"kind": "<b>x</b>"})
    assert response.status_code == 422 and response.json()["detail"][0]["loc"] == ["query", "kind"]
    assert api.get(f"{API}/alerts", headers=bearer(tokens, "vic"), params={"limit": 0}).status_code == 422


def test_a_dead_database_is_a_503_naming_it_and_never_its_password(api, tokens, monkeypatch):
    monkeypatch.setenv("CLM_DATABASE_URL", f"postgresql+psycopg2://clm:{SECRET}@127.0.0.1:9/clm")
    viewer = bearer(tokens, "vic")
    for route in ("/health", "/alerts"):
        response = api.get(API + route, headers=viewer)
        assert response.status_code == 503 and "clm's database cannot be read (since" in response.json()["detail"]
        assert SECRET not in response.text
    for route in ("/overview", "/integrations", "/getting-started"):
        response = api.get(API + route, headers=viewer)
        assert response.status_code == 200 and SECRET not in response.text, route
    db = next(i for i in api.get(f"{API}/integrations", headers=viewer).json()["integrations"]
              if i["name"] == "clm's database")  # fmt: skip
    assert db["state"] == "unreachable" and db["since"] and db["address"] == "postgresql+psycopg2://clm:***@127.0.0.1:9/clm"
