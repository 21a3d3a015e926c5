"""``/clm/api/v1/performance/*`` with the FAB auth manager and real users, on a seeded clm database: the same numbers
as the Performance screen, 422 naming a bad filter, 503 naming a dead database."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.clm_lib.reporting.test_performance import NOW
from tests.clm_lib.reporting.test_performance import filled as filled

API = "/clm/api/v1/performance"
WINDOW = {"since": (NOW - timedelta(hours=24)).isoformat(), "until": NOW.isoformat()}


@pytest.fixture(scope="module")
def api(airflow_fab):
    from airflow.api_fastapi.app import create_app
    from fastapi.testclient import TestClient

    with TestClient(create_app(apps="core")) as client:
        yield client


@pytest.fixture
def seeded(filled, monkeypatch):
    monkeypatch.setenv("CLM_DATABASE_URL", filled.database_url)
    return filled


def _as(tokens, name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens[name]}"}


@pytest.mark.parametrize("route", ["/matrix", "/serving", "/drift"])
def test_every_route_needs_a_reader(api, tokens, seeded, route):
    assert api.get(API + route).status_code == 401
    assert api.get(API + route, headers=_as(tokens, "pat")).status_code == 403
    assert api.get(API + route, headers=_as(tokens, "vic")).status_code == 200


def test_matrix_serving_and_drift_answer_the_screens_numbers(api, tokens, seeded):
    viewer = _as(tokens, "vic")
    m = api.get(f"{API}/matrix", headers=viewer).json()
    assert m["tasks"] == ["qa", "sum", "code"] and [v["model_version"] for v in m["versions"]] == ["1", "2", "10"]
    assert m["versions"][0]["scores"] == {"qa": 90.0, "sum": None, "code": None}
    assert len(api.get(f"{API}/matrix", headers=viewer, params={"max_versions": 1}).json()["versions"]) == 1

    s = api.get(f"{API}/serving", headers=viewer, params=WINDOW).json()
    assert s["step_s"] == 900 and s["versions"] == ["2", "10"]
    totals = {t["model_version"]: t for t in s["totals"]}
    assert (totals["2"]["requests"], totals["2"]["errors"], totals["2"]["feedback_mean"]) == (85, 3, 0.75)
    only = api.get(f"{API}/serving", headers=viewer, params={**WINDOW, "version": "10"}).json()
    assert only["versions"] == ["10"] and only["points"][0]["error_rate"] == 0.5

    d = api.get(f"{API}/drift", headers=viewer, params={**WINDOW, "detector": "embedding_mmd"}).json()
    (mmd,) = d["detectors"]
    assert mmd["measure"] == "p-value" and [p["drift"] for p in mmd["points"]] == [False, True]
    assert {p["threshold"] for p in mmd["points"]} == {0.01} and mmd["points"][1]["check_id"] == "c1"


@pytest.mark.parametrize(
    ("route", "params", "field"),
    [
        ("/serving", {"since": NOW.isoformat(), "until": (NOW - timedelta(hours=1)).isoformat()}, "since"),
        ("/serving", {"since": "2026-12-07T10:00:00", "until": NOW.isoformat()}, "since"),
        ("/serving", {"since": "yesterday"}, "since"),
        ("/serving", {**WINDOW, "version": "1; drop table"}, "version"),
        ("/serving", {"version": "9" * 40}, "version"),
        ("/serving", {"until": "0001-01-01T00:00:00Z"}, "until"),
        ("/drift", {**WINDOW, "detector": "nope"}, "detector"),
        ("/drift", {"detector": "x" * 65}, "detector"),
        ("/matrix", {"max_versions": 0}, "max_versions"),
    ],
)
def test_bad_filters_are_422_naming_the_field(api, tokens, seeded, route, params, field):
    r = api.get(API + route, headers=_as(tokens, "vic"), params=params)
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == ["query", field]


def test_a_dead_database_is_a_503_naming_it(api, tokens, monkeypatch, tmp_path):
    monkeypatch.setenv("CLM_DATABASE_URL", f"sqlite:///{tmp_path / 'absent.db'}")
    r = api.get(f"{API}/serving", headers=_as(tokens, "vic"))
    assert r.status_code == 503 and "clm's database cannot be read (since" in r.json()["detail"]
