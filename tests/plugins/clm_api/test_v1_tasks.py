"""``/clm/api/v1/tasks...`` as Airflow's api-server mounts them (the real ``create_app``, the FAB auth manager, real
users and roles), over a seeded clm database and MLflow registry. Removing a task triggers ``clm_continual_training``
through Airflow's REST API: a loopback server stands in for it (``CLM_AIRFLOW_URL``) and what it receives is checked,
as are the audit log and the configuration revisions."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from clm_lib.db import session_scope
from clm_lib.db.models import AuditEntry
from tests.clm_lib.reporting.tasks_history import HOSTILE_TASK, quarantine_solar, seeded_config

V1 = "/clm/api/v1"
REASON = "<script>alert(1)</script> billing moves to its own model"


@pytest.fixture(scope="module")
def api(airflow_fab):
    from airflow.api_fastapi.app import create_app
    from fastapi.testclient import TestClient

    with TestClient(create_app(apps="core")) as client:
        yield client


@pytest.fixture
def seeded(airflow_fab, tmp_path, monkeypatch, _mlflow_template):
    return seeded_config(tmp_path, monkeypatch, _mlflow_template)


def _as(tokens, name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens[name]}"}


def _audit(cfg) -> list[AuditEntry]:
    with session_scope(cfg.database_url) as s:
        return list(s.scalars(select(AuditEntry).order_by(AuditEntry.id)))


def _live_tasks(cfg) -> list[str]:
    from clm_lib.reporting.stores import reading
    from clm_lib.reporting.tasks import configured_tasks

    with reading(cfg.database_url) as s:
        return configured_tasks(s, cfg)


def test_the_list_one_task_and_the_impacts(api, tokens, seeded):
    viewer = _as(tokens, "vic")
    listed = api.get(f"{V1}/tasks", headers=viewer).json()
    assert [t["task"] for t in listed["tasks"]] == [*seeded.data.tasks, HOSTILE_TASK]
    assert listed["champion"]["version"] == "2" and listed["champion"]["mode"] == "per_task"
    billing = api.get(f"{V1}/tasks/billing", headers=viewer).json()
    assert (billing["score"], billing["adapter"], billing["rank"], billing["curated_rows"]) == (70.0, "own", 4, 250)
    impact = api.get(f"{V1}/tasks/billing/impact", headers=viewer).json()
    assert impact["removable"] and impact["scores"] == {"routers": 77.5}
    assert impact["routing_basis"] == "router memory" and impact["router_accuracy_after"] == 1.0
    quarantine_solar(seeded, 2)
    add = api.get(f"{V1}/tasks/impact", params={"add": "solar"}, headers=viewer).json()
    assert add["quarantined"] == 2 and add["data_tasks_after"][-1] == "solar"
    assert _audit(seeded) == []  # reading changes nothing


def test_unknown_task_is_404_naming_it_and_bad_names_422_naming_the_field(api, tokens, seeded):
    viewer = _as(tokens, "vic")
    for path in ("/tasks/nope", "/tasks/nope/impact"):
        response = api.get(V1 + path, headers=viewer)
        assert response.status_code == 404 and "'nope'" in response.json()["detail"]
    bad = api.get(f"{V1}/tasks/impact", params={"add": "billing"}, headers=viewer)
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "add"]
    assert "already in data.tasks" in bad.json()["detail"][0]["msg"]
    assert api.get(f"{V1}/tasks/impact", headers=viewer).status_code == 422
    assert api.get(f"{V1}/tasks/" + "x" * 201, headers=viewer).status_code == 422


def test_an_operator_removes_a_task_with_their_own_token_audited(api, tokens, seeded, fake_airflow):
    response = api.post(f"{V1}/tasks/billing/remove", json={"reason": REASON}, headers=_as(tokens, "otto"))

    assert response.status_code == 200, response.text
    out = response.json()
    assert out["dag_run_id"] == "manual__2026-12-07T10:00:00+00:00" and out["revision"] == 2
    [seen] = fake_airflow.seen
    assert seen["auth"] == f"Bearer {tokens['otto']}"
    assert seen["path"] == "/api/v2/dags/clm_continual_training/dagRuns"
    assert seen["body"]["conf"] == {"remove_task": "billing", "reason": REASON}
    actions = [(e.action, e.actor, e.reason) for e in _audit(seeded)]
    assert actions == [("task.remove_requested", "airflow:otto", REASON), ("config.changed", "airflow:otto", REASON)]
    assert "billing" not in _live_tasks(seeded) and out["data_tasks"] == _live_tasks(seeded)


def test_an_operator_adds_a_task_as_a_configuration_revision(api, tokens, seeded, fake_airflow):
    response = api.post(f"{V1}/tasks", json={"name": "solar", "reason": "new product line"},
                        headers=_as(tokens, "otto"))  # fmt: skip

    assert response.status_code == 201, response.text
    assert response.json()["revision"] == 2 and _live_tasks(seeded)[-1] == "solar"
    [entry] = _audit(seeded)
    assert (entry.action, entry.actor, entry.reason) == ("config.changed", "airflow:otto", "new product line")
    listed = api.get(f"{V1}/tasks", headers=_as(tokens, "vic")).json()
    assert "solar" in listed["configured"]
    assert fake_airflow.seen == []  # adding trains nothing now: the next update with its data does
    stale = api.post(f"{V1}/tasks", json={"name": "wind", "reason": "r", "base_revision": 1},
                     headers=_as(tokens, "otto"))  # fmt: skip
    assert stale.status_code == 409 and "revision 2 was saved since" in stale.json()["detail"]


@pytest.mark.parametrize("name", ["vic", "pat"])
def test_who_may_not_change_tasks_changes_nothing(api, tokens, seeded, fake_airflow, name):
    removed = api.post(f"{V1}/tasks/billing/remove", json={"reason": "x"}, headers=_as(tokens, name))
    added = api.post(f"{V1}/tasks", json={"name": "solar", "reason": "x"}, headers=_as(tokens, name))
    assert removed.status_code == added.status_code == 403
    assert fake_airflow.seen == [] and _audit(seeded) == [] and "solar" not in _live_tasks(seeded)


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [("/tasks/billing/remove", {}, "reason"), ("/tasks/billing/remove", {"reason": "  "}, "reason"),
     ("/tasks/billing/remove", {"reason": "x" * 2001}, "reason"), ("/tasks", {"name": "a b", "reason": "r"}, "name"),
     ("/tasks", {"name": "routers", "reason": "r"}, "name"), ("/tasks", {"name": "solar"}, "reason"),
     ("/tasks", {"name": "solar", "reason": "r", "extra": 1}, "extra")],
)  # fmt: skip
def test_bad_requests_are_422_naming_the_field(api, tokens, seeded, fake_airflow, path, body, field):
    response = api.post(V1 + path, json=body, headers=_as(tokens, "otto"))
    assert response.status_code == 422, response.text
    assert field in [str(p) for e in response.json()["detail"] for p in e["loc"]]
    assert fake_airflow.seen == [] and _audit(seeded) == []


def test_what_cannot_be_removed_is_409_and_unknown_404(api, tokens, seeded, fake_airflow):
    otto = _as(tokens, "otto")
    no_adapter = api.post(f"{V1}/tasks/thermostats/remove", json={"reason": "r"}, headers=otto)
    assert no_adapter.status_code == 409 and "no adapter for thermostats" in no_adapter.json()["detail"]
    unknown = api.post(f"{V1}/tasks/nope/remove", json={"reason": "r"}, headers=otto)
    assert unknown.status_code == 404 and "'nope'" in unknown.json()["detail"]
    fake_airflow.answer = (403, {"detail": "Forbidden"})
    refused = api.post(f"{V1}/tasks/billing/remove", json={"reason": "r"}, headers=otto)
    assert refused.status_code == 403 and "Airflow refused" in refused.json()["detail"]
    assert _audit(seeded) == [] and "billing" in _live_tasks(seeded)
