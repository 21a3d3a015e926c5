"""``/clm/api/v1`` data routes (ingestion, quarantine, data versions) as Airflow's api-server mounts them, with the
FAB auth manager and real users, on a real lake made by ingesting small generated files."""

from __future__ import annotations

import pytest

from tests.clm_lib.reporting.data_lake import HOSTILE, build_lake
from tests.plugins.helpers import bearer

API = "/clm/api/v1"
ROUTES = [
    "/ingestion/batches", "/ingestion/summary", "/quarantine", "/data/tables", "/data/tables/curated/history",
    "/data/tables/curated/diff?from=0&to=1", "/data/tables/curated/versions/0/runs",
]  # fmt: skip


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    from clm_lib.db import session_scope
    from clm_lib.db.models import TrainingRun

    built = build_lake(tmp_path_factory.mktemp("api-data") / "home")
    with session_scope(built.cfg.database_url) as s:
        s.add(TrainingRun(id="tr-9", status="succeeded", base_model="b", config_hash="h", model_version="9",
                          curated_version=1, previous_curated_version=0))  # fmt: skip
    return built


@pytest.fixture
def stores(lake, monkeypatch):
    monkeypatch.setenv("CLM_DATABASE_URL", lake.cfg.database_url)
    monkeypatch.setenv("CLM_DATA_URI", lake.cfg.lake_uri)
    return lake


@pytest.mark.parametrize("route", ROUTES)
def test_every_data_route_needs_a_reader(api, tokens, stores, route):
    assert api.get(API + route).status_code == 401
    assert api.get(API + route, headers=bearer(tokens, "pat")).status_code == 403
    assert api.get(API + route, headers=bearer(tokens, "vic")).status_code == 200


def test_batches_filter_and_page(api, tokens, stores):
    viewer = bearer(tokens, "vic")
    page = api.get(f"{API}/ingestion/batches", headers=viewer).json()
    assert (page["total"], page["offset"], page["limit"]) == (2, 0, 50)
    newest = page["items"][0]
    assert (newest["id"], newest["kind"], newest["rows_in"], newest["reconciles"]) == (
        stores.feedback.batch_id,
        "feedback",
        3,
        True,
    )

    files = api.get(f"{API}/ingestion/batches", params={"source": "files", "status": "committed"}, headers=viewer)
    assert [b["id"] for b in files.json()["items"]] == [stores.files.batch_id]
    later = api.get(f"{API}/ingestion/batches", params={"since": "2999-01-01T00:00:00"}, headers=viewer).json()
    assert later["total"] == 0
    for edge in ("0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00"):  # out of range once in UTC
        assert api.get(f"{API}/ingestion/batches", params={"since": edge}, headers=viewer).status_code == 200
    one = api.get(f"{API}/ingestion/batches/{stores.files.batch_id}", headers=viewer).json()
    assert one["task_counts"] == {"billing": 1, "routers": 3} and one["rows_quarantined"] == 4


def test_summary_reconciles(api, tokens, stores):
    summary = api.get(f"{API}/ingestion/summary", params={"hours": 2}, headers=bearer(tokens, "vic")).json()

    assert len(summary["hourly"]) == 2 and summary["problems"] == []
    assert all(r["ok"] for r in summary["reconciliation"])
    assert {s["kind"]: s["rows_in"] for s in summary["sources"]} == {"files": 9, "feedback": 3}
    assert {r["reason"]: r["review_queue"] for r in summary["reasons"]}["pending_review"] == 1


def test_quarantine_returns_hostile_records_as_data(api, tokens, stores):
    viewer = bearer(tokens, "vic")
    page = api.get(f"{API}/quarantine", params={"reason": "unknown_task"}, headers=viewer).json()

    assert page["total"] == 1 and page["filters"] == {"reason": "unknown_task"}
    assert page["items"][0]["prompt"] == HOSTILE  # JSON is data: not escaped, not cut
    review = api.get(f"{API}/quarantine", params={"source": "feedback"}, headers=viewer).json()["items"]
    assert [(r["reason"], r["review_status"], r["feedback_id"]) for r in review] == [
        ("pending_review", "pending_review", stores.feedback_id)
    ]
    paged = api.get(f"{API}/quarantine", params={"offset": 4, "limit": 2}, headers=viewer).json()
    assert (paged["total"], len(paged["items"])) == (5, 1)


def test_data_versions(api, tokens, stores):
    viewer = bearer(tokens, "vic")
    tables = {t["name"]: t for t in api.get(f"{API}/data/tables", headers=viewer).json()}
    assert (tables["curated"]["version"], tables["curated"]["rows"]) == (1, 6) and not tables["eval"]["exists"]

    history = api.get(f"{API}/data/tables/curated/history", headers=viewer).json()
    assert [c["version"] for c in history["items"]] == [1, 0] and history["latest"] == 1
    assert history["items"][0]["batches"] == [stores.feedback.batch_id]
    assert [r["id"] for r in history["items"][0]["runs"]] == ["tr-9"]

    diff = api.get(f"{API}/data/tables/curated/diff", params={"from": 0, "to": 1, "samples": 1}, headers=viewer).json()
    assert (diff["added"], diff["removed"], len(diff["samples_added"])) == (2, 0, 1)
    assert {t["task"]: t["added"] for t in diff["tasks"]} == stores.feedback.task_counts

    runs = api.get(f"{API}/data/tables/curated/versions/0/runs", headers=viewer).json()
    assert [(r["id"], r["role"]) for r in runs] == [("tr-9", "previous_curated_version")]


@pytest.mark.parametrize(("route", "named"), [
    ("/ingestion/batches/0123456789abcdef", "0123456789abcdef"),
    ("/data/tables/secrets/history", "'secrets'"),
    ("/data/tables/secrets/diff?from=0&to=1", "'secrets'"),
    ("/data/tables/curated/diff?from=0&to=5", "no version 5"),
    ("/data/tables/curated/versions/42/runs", "no version 42"),
    ("/data/tables/eval/versions/0/runs", "'eval'"),
])  # fmt: skip
def test_unknown_things_are_404s_naming_them(api, tokens, stores, route, named):
    response = api.get(API + route, headers=bearer(tokens, "vic"))

    assert response.status_code == 404, response.text
    assert named in response.json()["detail"]


@pytest.mark.parametrize(("route", "field"), [
    ("/ingestion/batches?source=ftp", "source"),
    ("/ingestion/batches?status=done", "status"),
    ("/ingestion/batches?since=yesterday", "since"),
    ("/ingestion/summary?hours=0", "hours"),
    ("/quarantine?source=carrier-pigeon", "source"),
    ("/quarantine?limit=501", "limit"),
    ("/quarantine?reason=" + "r" * 201, "reason"),
    ("/data/tables/curated/diff?to=1", "from"),
    ("/data/tables/curated/diff?from=0&to=" + "9" * 30, "to"),
    ("/data/tables/curated/versions/" + "9" * 30 + "/runs", "version"),
    ("/data/tables/curated/versions/-1/runs", "version"),
])  # fmt: skip
def test_bad_filters_are_422s_naming_the_field(api, tokens, stores, route, field):
    response = api.get(API + route, headers=bearer(tokens, "vic"))

    assert response.status_code == 422, response.text
    assert field in [e["loc"][-1] for e in response.json()["detail"]]


def test_a_store_that_cannot_be_read_is_a_503_naming_it(api, tokens, stores, monkeypatch):
    monkeypatch.setenv("CLM_DATABASE_URL", "postgresql+psycopg2://clm@127.0.0.1:9/clm")

    response = api.get(f"{API}/ingestion/batches", headers=bearer(tokens, "vic"))
    assert response.status_code == 503
    assert "clm's database cannot be read (since " in response.json()["detail"]
    # the quarantine lives in the lake, which still answers
    assert api.get(f"{API}/quarantine", headers=bearer(tokens, "vic")).json()["total"] == 5


@pytest.fixture
def own_lake(tmp_path, monkeypatch):
    """A lake of its own: a restore changes it."""
    built = build_lake(tmp_path / "home")
    monkeypatch.setenv("CLM_DATABASE_URL", built.cfg.database_url)
    monkeypatch.setenv("CLM_DATA_URI", built.cfg.lake_uri)
    return built


def test_restore_needs_an_operator_and_is_audited_with_the_caller(api, tokens, own_lake):
    from sqlalchemy import select

    from clm_lib.data import lake as lake_tables
    from clm_lib.db import session_scope
    from clm_lib.db.models import AuditEntry

    route, body = f"{API}/data/tables/curated/restore", {"version": 0, "reason": "feedback batch was wrong"}
    assert api.post(route, json=body).status_code == 401
    assert api.post(route, json=body, headers=bearer(tokens, "vic")).status_code == 403
    response = api.post(route, json=body, headers=bearer(tokens, "uma"))
    assert response.status_code == 200, response.text
    done = response.json()
    assert (done["restored_version"], done["from_version"], done["new_version"]) == (0, 1, 2)
    cfg = own_lake.cfg
    assert lake_tables.read_table(cfg, "curated").num_rows == lake_tables.read_table(cfg, "curated", 0).num_rows
    with session_scope(cfg.database_url) as s:
        entry = s.scalars(select(AuditEntry).where(AuditEntry.action == "data.restored")).one()
    audited = (entry.actor, entry.reason, entry.from_value, entry.to_value)
    assert audited == ("airflow:uma", "feedback batch was wrong", "1", "0")


@pytest.mark.parametrize(("route", "body", "status", "named"), [
    ("/data/tables/secrets/restore", {"version": 0, "reason": "r"}, 404, "'secrets'"),
    ("/data/tables/curated/restore", {"version": 7, "reason": "r"}, 404, "no version 7"),
    ("/data/tables/eval/restore", {"version": 0, "reason": "r"}, 404, "'eval' has no version 0"),
    ("/data/tables/curated/restore", {"version": 0, "reason": "   "}, 422, "reason"),
    ("/data/tables/curated/restore", {"version": 0}, 422, "reason"),
    ("/data/tables/curated/restore", {"version": -1, "reason": "r"}, 422, "version"),
    ("/data/tables/curated/restore", {"version": 0, "reason": "r" * 2001}, 422, "reason"),
    ("/data/tables/curated/restore", {"version": 0, "reason": "r", "force": True}, 422, "force"),
])  # fmt: skip
def test_restore_refusals_name_what_is_wrong(api, tokens, own_lake, route, body, status, named):
    response = api.post(API + route, json=body, headers=bearer(tokens, "otto"))

    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert named in (detail if status == 404 else [e["loc"][-1] for e in detail])
    from clm_lib.data import lake as lake_tables

    assert lake_tables.table_version(own_lake.cfg, "curated") == 1  # nothing was written
