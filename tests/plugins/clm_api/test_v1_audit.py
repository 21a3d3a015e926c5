"""``/clm/api/v1/audit`` (list, export, verify) and ``/v1/reports/{version}`` as Airflow's api-server mounts them,
with the FAB auth manager and real users."""

from __future__ import annotations

import csv
import io
import itertools
import json

import pytest

from tests.clm_lib.reporting.audit_history import HOSTILE, seed_audit
from tests.plugins.helpers import bearer

V1 = "/clm/api/v1"


@pytest.fixture
def logged(airflow_fab, tmp_path, monkeypatch):
    """clm's database holding the eight entries of ``audit_history.ENTRIES`` (2026-01-01 .. 08)."""
    from clm_lib.config import load_config
    from clm_lib.db import upgrade

    monkeypatch.setenv("CLM_DATABASE_URL", f"sqlite:///{tmp_path / 'clm.db'}")
    cfg = load_config()
    upgrade(cfg.database_url)
    seed_audit(cfg.database_url)
    return cfg


@pytest.mark.parametrize("path", ["/audit", "/audit/export", "/audit/verify", "/reports/1"])
def test_anonymous_is_401_public_403(api, tokens, path):
    assert api.get(V1 + path).status_code == 401
    assert api.get(V1 + path, headers=bearer(tokens, "pat")).status_code == 403


def test_a_viewer_reads_the_log_filtered_and_paged(api, tokens, logged):
    headers = bearer(tokens, "vic")

    everything = api.get(f"{V1}/audit", headers=headers).json()
    moves = api.get(f"{V1}/audit", params={"action": "alias.", "actor": "otto", "limit": 1}, headers=headers).json()
    window = api.get(f"{V1}/audit", params={"since": "2026-01-03", "until": "2026-01-05T12:00:00Z"},
                     headers=headers).json()  # fmt: skip

    assert (everything["total"], [e["id"] for e in everything["items"]]) == (8, [8, 7, 6, 5, 4, 3, 2, 1])
    assert (moves["total"], [e["id"] for e in moves["items"]]) == (2, [7])
    assert [e["id"] for e in window["items"]] == [4, 3]
    row = everything["items"][2]
    assert (row["actor"], row["action"], row["reason"], row["feedback_id"]) == ("airflow:uma", "feedback.reject",
                                                                               HOSTILE, 7)  # fmt: skip
    assert everything["items"][5]["version"] == "2" and everything["items"][5]["deployment_id"] == 4


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"since": "last week"}, "since"),
        ({"since": "2026-01-05", "until": "2026-01-01"}, "until"),
        ({"actor": "a" * 300}, "actor"),
        ({"offset": "x"}, "offset"),
        ({"limit": 10_000}, "limit"),
    ],
)
def test_a_bad_filter_is_a_422_naming_the_field(api, tokens, logged, params, field):
    response = api.get(f"{V1}/audit", params=params, headers=bearer(tokens, "vic"))

    assert response.status_code == 422
    assert ["query", field] in [e["loc"] for e in response.json()["detail"]]


def test_csv_export_streams_every_matching_entry(api, tokens, logged):
    response = api.get(f"{V1}/audit/export", params={"format": "csv", "actor": "ada"}, headers=bearer(tokens, "vic"))

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert response.headers["content-disposition"].startswith('attachment; filename="clm-audit-')
    assert response.headers["x-total-count"] == "2"
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [(r["id"], r["action"]) for r in rows] == [("1", "alias.challenger"), ("2", "alias.champion")]


def test_json_export_is_the_whole_chain(api, tokens, logged):
    response = api.get(f"{V1}/audit/export", params={"format": "json"}, headers=bearer(tokens, "vic"))

    entries = json.loads(response.text)
    assert response.headers["content-type"] == "application/json" and len(entries) == 8
    assert all(b["prev_hash"] == a["hash"] for a, b in itertools.pairwise(entries))


def test_an_unknown_export_format_is_a_422(api, tokens, logged):
    response = api.get(f"{V1}/audit/export", params={"format": "xlsx"}, headers=bearer(tokens, "vic"))

    assert response.status_code == 422 and response.json()["detail"][0]["loc"] == ["query", "format"]


def test_verify_reports_the_chain(api, tokens, logged):
    body = api.get(f"{V1}/audit/verify", headers=bearer(tokens, "vic")).json()

    assert (body["ok"], body["checked"], body["broken_id"]) == (True, 8, None)
    assert len(body["head"]) == 64 and body["checked_at"]


def test_a_version_report_and_an_unknown_version(api, tokens, logged, register_version, mlflow_uri, monkeypatch):
    from clm_lib.config import load_config

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
    version = register_version(load_config(), {"routers": 88.0})
    headers = bearer(tokens, "vic")

    report = api.get(f"{V1}/reports/{version}", headers=headers).json()
    unknown = api.get(f"{V1}/reports/4242", headers=headers)
    bad = api.get(f"{V1}/reports/latest", headers=headers)

    assert report["version"] == version and report["evaluation"]["scores"] == {"routers": 88.0}
    assert report["evaluation"]["metrics"] == {"routers": {"primary": "exact_match", "values": {"exact_match": 88.0}}}
    assert report["lineage"]["training_run_id"] == f"run-{version}" and report["aliases"] == ["challenger"]
    assert unknown.status_code == 404 and "no model version 4242" in unknown.json()["detail"]
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["path", "version"]
