"""``/clm/api/v1/validation`` routes as Airflow's api-server mounts them, with the FAB auth manager and real users,
on GX verdicts stored by ingesting small generated files (one with a hostile failing value)."""

from __future__ import annotations

import pytest

from tests.clm_lib.reporting.data_lake import HOSTILE
from tests.clm_lib.reporting.validation_lake import build_validation_lake
from tests.plugins.helpers import bearer

API = "/clm/api/v1"


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    return build_validation_lake(tmp_path_factory.mktemp("api-validation") / "home")


@pytest.fixture
def stores(lake, monkeypatch):
    monkeypatch.setenv("CLM_DATABASE_URL", lake.cfg.database_url)
    monkeypatch.setenv("CLM_DATA_URI", lake.cfg.lake_uri)
    return lake


@pytest.mark.parametrize("route", ["/validation", "/validation/expectations"])
def test_every_validation_route_needs_a_reader(api, tokens, stores, route):
    assert api.get(API + route).status_code == 401
    assert api.get(API + route, headers=bearer(tokens, "pat")).status_code == 403
    assert api.get(API + route, headers=bearer(tokens, "vic")).status_code == 200


def test_batches_with_their_outcome_filter_and_page(api, tokens, stores):
    viewer = bearer(tokens, "vic")
    page = api.get(f"{API}/validation", headers=viewer).json()
    assert (page["total"], page["offset"], page["limit"]) == (3, 0, 50)
    newest = page["items"][0]
    assert (newest["batch_id"], newest["success"], newest["evaluated"], newest["failed"]) == (
        stores.hostile.batch_id, False, 3, 1)  # fmt: skip
    assert newest["failed_expectations"] == ["unknown_task"]

    passed = api.get(f"{API}/validation", params={"outcome": "success"}, headers=viewer).json()
    assert [b["batch_id"] for b in passed["items"]] == [stores.lake.feedback.batch_id]
    files = api.get(f"{API}/validation", params={"source": "files", "limit": 1, "offset": 1}, headers=viewer).json()
    assert (files["total"], [b["batch_id"] for b in files["items"]]) == (2, [stores.lake.files.batch_id])
    later = api.get(f"{API}/validation", params={"since": "2999-01-01T00:00:00"}, headers=viewer).json()
    assert later["total"] == 0


def test_one_batch_expectation_by_expectation_returns_failing_values_as_data(api, tokens, stores):
    got = api.get(f"{API}/validation/{stores.hostile.batch_id}", headers=bearer(tokens, "vic")).json()

    assert got["batch"]["suite"] == "curated_records" and len(got["expectations"]) == 10
    failed = [e for e in got["expectations"] if not e["success"]]
    assert [(e["reason"], e["column"], e["unexpected_count"]) for e in failed] == [("unknown_task", "task", 1)]
    assert failed[0]["failing_values"] == [HOSTILE]  # JSON is data: not escaped
    assert failed[0]["type"] == "expect_column_values_to_be_in_set" and "routers" in failed[0]["kwargs"]["value_set"]


def test_failure_counts_per_expectation(api, tokens, stores):
    stats = api.get(f"{API}/validation/expectations", params={"batches": 2}, headers=bearer(tokens, "vic")).json()
    assert stats["batches"] == 2
    top = stats["items"][0]
    assert (top["reason"], top["failed_batches"], top["unexpected_rows"], top["batches"]) == ("unknown_task", 1, 1, 2)


def test_an_unknown_batch_is_a_404_naming_it(api, tokens, stores):
    response = api.get(f"{API}/validation/0123456789abcdef", headers=bearer(tokens, "vic"))
    assert response.status_code == 404 and "0123456789abcdef" in response.json()["detail"]


@pytest.mark.parametrize(("route", "field"), [
    ("/validation?outcome=maybe", "outcome"),
    ("/validation?source=ftp", "source"),
    ("/validation?since=yesterday", "since"),
    ("/validation?limit=501", "limit"),
    ("/validation/expectations?batches=0", "batches"),
    ("/validation/" + "b" * 65, "batch_id"),
])  # fmt: skip
def test_bad_filters_are_422s_naming_the_field(api, tokens, stores, route, field):
    response = api.get(API + route, headers=bearer(tokens, "vic"))
    assert response.status_code == 422, response.text
    assert field in [e["loc"][-1] for e in response.json()["detail"]]


def test_a_database_that_cannot_be_read_is_a_503_naming_it(api, tokens, stores, monkeypatch):
    monkeypatch.setenv("CLM_DATABASE_URL", "postgresql+psycopg2://clm@127.0.0.1:9/clm")
    for route in ("/validation", "/validation/expectations", f"/validation/{stores.hostile.batch_id}"):
        response = api.get(API + route, headers=bearer(tokens, "vic"))
        assert response.status_code == 503
        assert "clm's database cannot be read (since " in response.json()["detail"]
