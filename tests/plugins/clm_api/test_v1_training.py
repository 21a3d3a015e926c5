"""``/clm/api/v1/training/...`` and ``/strategy/history`` as Airflow's api-server mounts them (the real
``create_app``, the FAB auth manager, real users and roles), over a seeded clm database. "Retrain now" triggers
through Airflow's REST API: the tests' Airflow DB holds no clm DAG, so a loopback HTTP server stands in for it
(``CLM_AIRFLOW_URL``) and the request it receives is checked (the caller's own token, the body); one test sends it
to the real api-server on loopback, which answers that it has no such DAG."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from clm_lib.db import session_scope
from clm_lib.db.models import AuditEntry
from tests.clm_lib.reporting.domain_history import seed_domain
from tests.clm_lib.reporting.training_history import HOSTILE, seed_training
from tests.plugins.helpers import bearer

V1 = "/clm/api/v1"
ROUTES = [
    ("get", "/training/runs"),
    ("get", "/training/runs/tr-b"),
    ("get", "/training/runs/tr-b/strategy"),
    ("get", "/training/schedule"),
    ("get", "/strategy/history"),
    ("get", "/strategy/domain"),
    ("post", "/training/retrain"),
]


@pytest.fixture
def seeded(airflow_fab, tmp_path, monkeypatch):
    from clm_lib.config import load_config
    from clm_lib.db import upgrade

    monkeypatch.setenv("CLM_DATABASE_URL", f"sqlite:///{tmp_path / 'clm.db'}")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    cfg = load_config()
    upgrade(cfg.database_url)
    seed_training(cfg.database_url, tmp_path / "runs")
    return cfg


def _audit(cfg) -> list[AuditEntry]:
    with session_scope(cfg.database_url) as s:
        return list(s.scalars(select(AuditEntry)))


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_anonymous_is_401_and_public_403(api, tokens, method, path):
    kwargs = {"json": {"reason": "x"}} if method == "post" else {}
    assert getattr(api, method)(V1 + path, **kwargs).status_code == 401
    assert getattr(api, method)(V1 + path, headers=bearer(tokens, "pat"), **kwargs).status_code == 403


def test_a_viewer_lists_runs_with_filters_and_paging(api, tokens, seeded):
    headers = bearer(tokens, "vic")

    page = api.get(f"{V1}/training/runs", headers=headers).json()
    assert page["total"] == 5 and [r["id"] for r in page["items"]] == ["tr-e", "tr-d", "tr-c", "tr-b", "tr-a"]
    assert [r["trigger"]["kind"] for r in page["items"]] == ["other", "sensor", "manual", "drift", "volume"]
    assert page["items"][2]["trigger"]["reason"] == HOSTILE  # data as stored; escaping is the display's job
    drift = api.get(f"{V1}/training/runs", params={"trigger": "drift"}, headers=headers).json()
    assert drift["total"] == 1 and drift["items"][0]["airflow_path"].startswith("/dags/clm_continual_training/runs/")
    ok = api.get(f"{V1}/training/runs", params={"status": "succeeded", "limit": 1, "offset": 1}, headers=headers)
    assert ok.json()["total"] == 3 and [r["id"] for r in ok.json()["items"]] == ["tr-b"]


@pytest.mark.parametrize(("params", "field"), [({"status": "done"}, "status"), ({"trigger": "cron"}, "trigger"),
                                               ({"limit": 0}, "limit")])  # fmt: skip
def test_bad_filters_are_422_naming_the_field(api, tokens, seeded, params, field):
    response = api.get(f"{V1}/training/runs", params=params, headers=bearer(tokens, "vic"))
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"][-1] == field


def test_a_run_with_its_checks_and_loss_curve(api, tokens, seeded):
    run = api.get(f"{V1}/training/runs/tr-b", headers=bearer(tokens, "vic")).json()

    assert run["run"]["trigger"]["detectors"] == ["task_mix"] and run["checks"][0]["check_id"] == "c2"
    assert {v["detector"]: v["p_value"] for v in run["checks"][0]["verdicts"]}["task_mix"] == 8.6e-43
    assert run["loss"]["total_steps"] == 1000 and run["loss"]["first"] == 2.0 and len(run["loss"]["losses"]) <= 401
    assert run["mlflow"]["run_id"] is None and run["mlflow"]["problem"]


def test_unknown_and_malformed_run_ids(api, tokens, seeded):
    headers = bearer(tokens, "vic")
    missing = api.get(f"{V1}/training/runs/tr-zzz", headers=headers)
    assert missing.status_code == 404 and "tr-zzz" in missing.json()["detail"]
    assert api.get(f"{V1}/training/runs/tr-zzz/strategy", headers=headers).status_code == 404
    assert api.get(f"{V1}/training/runs/{'x' * 65}", headers=headers).status_code == 422
    assert api.get(f"{V1}/training/runs/.hidden", headers=headers).status_code == 422


def test_strategy_of_a_run_and_the_history(api, tokens, seeded):
    headers = bearer(tokens, "vic")
    one = api.get(f"{V1}/training/runs/tr-b/strategy", headers=headers).json()
    assert one["replay"]["buffer_tasks_after"] == {"routers": 100, "billing": 100} and one["replay"]["dynamic"]
    assert one["ewc"]["strength"] == 500.0 and one["freezing"]["frozen_modules"][0] == "model.embed_tokens"
    assert [s["share"] for s in one["composition"]] == [50.0, 50.0]
    history = api.get(f"{V1}/strategy/history", params={"limit": 2}, headers=headers).json()
    assert [r["run_id"] for r in history["runs"]] == ["tr-b", "tr-c"] and history["tasks"] == ["routers", "billing"]
    assert api.get(f"{V1}/strategy/history", params={"limit": 0}, headers=headers).status_code == 422


def test_domain_adaptations(api, tokens, seeded):
    headers = bearer(tokens, "vic")
    assert api.get(f"{V1}/strategy/domain", headers=headers).json()["adaptations"] == []
    newer, older = seed_domain(seeded)
    found = api.get(f"{V1}/strategy/domain", headers=headers).json()
    assert [a["base_after"] for a in found["adaptations"]] == [newer, older]
    old = found["adaptations"][1]
    assert (old["mean_change_original"], old["mean_change_new"], old["in_use"]) == (-5.0, 25.5, False)
    assert old["tasks"][1]["task"] == HOSTILE  # data as stored; escaping is the display's job


def test_schedule(api, tokens, seeded):
    found = api.get(f"{V1}/training/schedule", headers=bearer(tokens, "vic")).json()
    assert found["last_check_at"].startswith("2026-11-23T09:17") and found["next_at"].startswith("2026-11-23T10:17")
    assert found["overdue"] is True  # long past, in the seeded history


def test_a_store_down_is_503_naming_it(api, tokens, airflow_fab, tmp_path, monkeypatch):
    monkeypatch.setenv("CLM_DATABASE_URL", f"sqlite:///{tmp_path / 'none.db'}")
    response = api.get(f"{V1}/training/runs", headers=bearer(tokens, "vic"))
    assert response.status_code == 503 and "clm's database" in response.json()["detail"]
    assert not (tmp_path / "none.db").exists()


def test_an_operator_retrains_with_their_own_token_and_it_is_audited(api, tokens, seeded, fake_airflow):
    response = api.post(f"{V1}/training/retrain", json={"reason": HOSTILE}, headers=bearer(tokens, "otto"))

    assert response.status_code == 200
    assert response.json() == {"dag_id": "clm_continual_training", "dag_run_id": "manual__2026-12-07T10:00:00+00:00"}
    body = {"logical_date": None, "conf": {"force": True, "reason": HOSTILE}}
    assert fake_airflow.seen == [
        {"path": "/api/v2/dags/clm_continual_training/dagRuns", "auth": f"Bearer {tokens['otto']}", "body": body}
    ]
    [entry] = _audit(seeded)
    assert (entry.action, entry.actor, entry.reason) == ("training.requested", "airflow:otto", HOSTILE)


def test_a_viewer_cannot_retrain_and_nothing_happens(api, tokens, seeded, fake_airflow):
    response = api.post(f"{V1}/training/retrain", json={"reason": "please"}, headers=bearer(tokens, "vic"))
    assert response.status_code == 403
    assert fake_airflow.seen == [] and _audit(seeded) == []


@pytest.mark.parametrize("body", [{}, {"reason": ""}, {"reason": "   "}, {"reason": "x" * 2001},
                                  {"reason": "ok", "force": False}])  # fmt: skip
def test_a_bad_request_is_422_and_triggers_nothing(api, tokens, seeded, fake_airflow, body):
    response = api.post(f"{V1}/training/retrain", json=body, headers=bearer(tokens, "otto"))
    assert response.status_code == 422
    assert fake_airflow.seen == [] and _audit(seeded) == []


def test_airflows_refusal_is_passed_on_and_not_audited(api, tokens, seeded, fake_airflow):
    fake_airflow.answer = (403, {"detail": "Forbidden"})
    response = api.post(f"{V1}/training/retrain", json={"reason": "why"}, headers=bearer(tokens, "otto"))
    assert response.status_code == 403 and "Airflow refused" in response.json()["detail"]
    assert _audit(seeded) == []


def test_the_real_api_server_is_called_with_the_callers_token(airflow_fab, tokens, seeded, monkeypatch):
    import httpx
    from airflow.api_fastapi.app import create_app

    from tests.clm_lib.serving.helpers import running

    monkeypatch.delenv("CLM_AIRFLOW_URL", raising=False)
    with running(create_app(apps="core")) as url:
        response = httpx.post(f"{url}{V1}/training/retrain", json={"reason": "why"}, headers=bearer(tokens, "otto"),
                              timeout=30)  # fmt: skip
    # Airflow accepted otto's token (no 401/403) and then found no such DAG in its (test) database.
    assert response.status_code == 404, response.text
    assert "clm_continual_training" in response.json()["detail"] and "HTTP 404" in response.json()["detail"]
    assert _audit(seeded) == []
