"""``/clm/api/v1/config...`` as Airflow's api-server mounts it: read as a Viewer, change as an operator (audited),
422 naming the field and the rule, 409 naming the newer revision, 404 for an unknown revision."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from clm_lib.db import session_scope
from clm_lib.db.models import AuditEntry, ConfigRevision
from tests.clm_lib.reporting.config_history import seed_gate_history
from tests.plugins.helpers import bearer

V1 = "/clm/api/v1"


@pytest.fixture(scope="module")
def api(airflow_fab):
    from airflow.api_fastapi.app import create_app
    from fastapi.testclient import TestClient

    with TestClient(create_app(apps="core")) as client:
        yield client


@pytest.fixture
def cfg(airflow_fab, tmp_path, monkeypatch):
    from clm_lib.config import load_config
    from clm_lib.db import upgrade

    monkeypatch.setenv("CLM_DATABASE_URL", f"sqlite:///{tmp_path / 'clm.db'}")
    monkeypatch.delenv("CLM__DEPLOY__BAKE_SECONDS", raising=False)
    cfg = load_config()
    upgrade(cfg.database_url)
    seed_gate_history(cfg.database_url)
    return cfg


def _stored(cfg) -> list[int]:
    with session_scope(cfg.database_url) as s:
        return list(s.scalars(select(ConfigRevision.number).order_by(ConfigRevision.number)))


def test_a_viewer_reads_the_live_revision_with_read_only_fields_marked(api, tokens, cfg):
    got = api.get(f"{V1}/config", headers=bearer(tokens, "vic"))
    assert got.status_code == 200, got.text
    body = got.json()
    assert body["revision"]["number"] == 1 and body["revision"]["kind"] == "file" and body["live_revision"] == 1
    fields = {f["path"]: f for s in body["sections"] for f in s["fields"]}
    assert fields["deploy.bake_seconds"] == {**fields["deploy.bake_seconds"], "value": 5.0, "read_only": None}
    assert "restart" in fields["server.airflow_port"]["read_only"]
    assert "secret" in fields["database.url"]["read_only"]
    assert api.post(f"{V1}/config/preview", json={"changes": {"gate.max_task_drop": 1}},
                    headers=bearer(tokens, "vic")).status_code == 403  # fmt: skip
    assert api.get(f"{V1}/config").status_code == 401
    assert _stored(cfg) == []  # reading stores nothing


def test_preview_save_history_diff_and_revert(api, tokens, cfg):
    op = bearer(tokens, "otto")
    preview = api.post(f"{V1}/config/preview", json={"changes": {"gate.max_task_drop": 1}}, headers=op)
    assert preview.status_code == 200, preview.text
    assert preview.json()["gate_would_refuse"] == ["2"] and preview.json()["base_revision"] == 1
    assert _stored(cfg) == []

    body = {"changes": {"deploy.bake_seconds": 30}, "base_revision": 1, "reason": "longer bake"}
    saved = api.post(f"{V1}/config", json=body, headers=op)
    assert saved.status_code == 201, saved.text
    assert saved.json()["number"] == 2 and saved.json()["changes"] == [
        {"path": "deploy.bake_seconds", "old": 5.0, "new": 30.0}
    ]
    conflict = api.post(f"{V1}/config", json={**body, "changes": {"gate.max_task_drop": 2}}, headers=op)
    assert conflict.status_code == 409 and "revision 2 was saved since" in conflict.json()["detail"]

    revs = api.get(f"{V1}/config/revisions", headers=bearer(tokens, "vic")).json()
    assert [r["number"] for r in revs["items"]] == [2, 1] and revs["total"] == 2 and revs["live_revision"] == 2
    one = api.get(f"{V1}/config/revisions/1", headers=bearer(tokens, "vic")).json()
    assert one["revision"]["number"] == 1 and one["live_revision"] == 2
    diff = api.get(f"{V1}/config/diff", params={"a": 1, "b": 2}, headers=bearer(tokens, "vic")).json()
    assert diff["changes"] == [{"path": "deploy.bake_seconds", "old": 5.0, "new": 30.0}]

    back = api.post(f"{V1}/config/revert", json={"to": 1, "base_revision": 2, "reason": "undo"}, headers=op)
    assert back.status_code == 201 and back.json()["kind"] == "revert" and back.json()["reverted_to"] == 1
    with session_scope(cfg.database_url) as s:
        actions = [(e.action, e.actor) for e in s.scalars(select(AuditEntry).order_by(AuditEntry.id))]
    assert actions == [("config.changed", "airflow:otto"), ("config.reverted", "airflow:otto")]


def test_bad_input_names_the_field_and_stores_nothing(api, tokens, cfg):
    op = bearer(tokens, "otto")
    rule = api.post(f"{V1}/config", json={"changes": {"deploy.canary_steps": [10, 50]}, "base_revision": 1,
                                          "reason": "x"}, headers=op)  # fmt: skip
    assert rule.status_code == 422
    assert rule.json()["detail"][0]["loc"] == ["body", "changes", "deploy.canary_steps"]
    assert "last canary step must be 100" in rule.json()["detail"][0]["msg"]
    read_only = api.post(f"{V1}/config", json={"changes": {"paths.lake": "/x"}, "base_revision": 1, "reason": "x"},
                         headers=op)  # fmt: skip
    assert read_only.status_code == 422 and "read-only" in read_only.json()["detail"][0]["msg"]
    no_reason = api.post(f"{V1}/config", json={"changes": {"gate.max_task_drop": 1}, "base_revision": 1,
                                               "reason": " "}, headers=op)  # fmt: skip
    assert no_reason.status_code == 422 and no_reason.json()["detail"][0]["loc"] == ["body", "reason"]
    huge = api.post(f"{V1}/config/preview", json={"changes": {"data.tasks": ["t"] * 10_000}}, headers=op)
    assert huge.status_code == 422 and "changes" in str(huge.json()["detail"][0]["loc"])
    assert api.get(f"{V1}/config/revisions/99", headers=op).status_code == 404
    assert api.get(f"{V1}/config/diff", params={"a": 1, "b": 99}, headers=op).json()["detail"] == (
        "no configuration revision 99"
    )
    assert _stored(cfg) == []
