"""``/clm/api/v1`` deployments, serving and rollback as Airflow's api-server mounts them (the real ``create_app``,
the FAB auth manager, real users and roles), and the unversioned routes of before, kept as deprecated aliases.
Promotions use the ``alias`` strategy (no serving slots): the rollback with serving is tested in
tests/clm_lib/deploy."""

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


@pytest.fixture
def promoted(airflow_fab, tmp_path, mlflow_uri, register_version, monkeypatch):
    """v1 then v2 promoted (``alias`` strategy): v2 champion, v1 previous; two promotions in the history."""
    from clm_lib.config import load_config
    from clm_lib.db import upgrade
    from clm_lib.deploy.rollout import rollout

    monkeypatch.setenv("CLM_DATABASE_URL", f"sqlite:///{tmp_path / 'clm.db'}")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
    monkeypatch.setenv("CLM__DEPLOY__STRATEGY", "alias")
    cfg = load_config()
    upgrade(cfg.database_url)
    for _ in range(2):
        register_version(cfg)
        rollout(cfg)
    return cfg


def _as(tokens, name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens[name]}"}


def _champion(cfg) -> str | None:
    from clm_lib.registry.mlflow_registry import alias_version

    return alias_version(cfg, "champion")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/deployments"),
        ("get", "/deployments/1"),
        ("get", "/serving"),
        ("post", "/rollback"),
        ("get", "/promotion/next"),
        ("post", "/promote"),
    ],
)
def test_anonymous_is_401_and_public_403(api, tokens, method, path):
    assert getattr(api, method)(V1 + path).status_code == 401
    assert getattr(api, method)(V1 + path, headers=_as(tokens, "pat")).status_code == 403


def test_a_viewer_pages_through_deployments_newest_first(api, tokens, promoted):
    headers = _as(tokens, "vic")

    first = api.get(f"{V1}/deployments", params={"limit": 1}, headers=headers).json()
    second = api.get(f"{V1}/deployments", params={"limit": 1, "offset": 1}, headers=headers).json()

    assert (first["total"], first["offset"], first["limit"]) == (2, 0, 1)
    assert [d["version"] for d in first["items"] + second["items"]] == ["2", "1"]
    assert first["items"][0]["kind"] == "promotion" and first["items"][0]["status"] == "promoted"
    assert first["items"][0]["started_at"].startswith("20")


@pytest.mark.parametrize(
    ("params", "versions"),
    [
        ({"kind": "promotion"}, ["2", "1"]),
        ({"kind": "rollback"}, []),
        ({"version": "1"}, ["2", "1"]),
        ({"status": "promoted", "version": "2"}, ["2"]),
    ],
)
def test_deployment_filters(api, tokens, promoted, params, versions):
    body = api.get(f"{V1}/deployments", params=params, headers=_as(tokens, "vic")).json()

    assert [d["version"] for d in body["items"]] == versions and body["total"] == len(versions)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"kind": "deploy"}, "kind"),
        ({"limit": 0}, "limit"),
        ({"limit": 501}, "limit"),
        ({"offset": -1}, "offset"),
        ({"version": "v1"}, "version"),
        ({"status": "x" * 5000}, "status"),
    ],
)
def test_a_bad_filter_is_a_422_naming_the_field(api, tokens, promoted, params, field):
    response = api.get(f"{V1}/deployments", params=params, headers=_as(tokens, "vic"))

    assert response.status_code == 422
    assert [e["loc"] for e in response.json()["detail"]] == [["query", field]]
    assert len(response.text) < 1000  # a 5,000-character value is not echoed back whole


@pytest.mark.parametrize(("ident", "status"), [("12345", 404), ("0", 422), (str(2**64), 422), ("x", 422)])
def test_a_deployment_id_is_bounded_and_an_unknown_one_named(api, tokens, promoted, ident, status):
    response = api.get(f"{V1}/deployments/{ident}", headers=_as(tokens, "vic"))

    assert response.status_code == status
    if status == 404:
        assert response.json() == {"detail": "no deployment #12345"}
    else:
        assert response.json()["detail"][0]["loc"] == ["path", "deployment_id"]


def test_one_deployment_with_its_steps(api, tokens, promoted):
    body = api.get(f"{V1}/deployments/2", headers=_as(tokens, "vic")).json()

    assert (body["id"], body["version"], body["from_version"], body["status"]) == (2, "2", "1", "promoted")
    assert body["events"] and {"at", "step", "status", "message"} <= set(body["events"][0])


def test_serving_shows_aliases_and_where_a_rollback_would_go(api, tokens, promoted):
    body = api.get(f"{V1}/serving", headers=_as(tokens, "vic")).json()

    assert body["aliases"]["champion"] == "2" and body["aliases"]["previous"] == "1" and body["registry"] == "ok"
    assert body["strategy"] == "alias" and body["rollback"]["possible"] is True


def test_serving_says_when_mlflow_did_not_answer_rather_than_that_there_is_no_champion(api, tokens, promoted,
                                                                                       monkeypatch):  # fmt: skip
    from clm_lib.deploy import state

    def slow(cfg):
        raise TimeoutError("MLflow did not answer")

    monkeypatch.setattr(state, "_mlflow_aliases", slow)
    body = api.get(f"{V1}/serving", headers=_as(tokens, "vic")).json()

    assert body["registry"] == "unreachable" and body["aliases"]["champion"] is None


def test_a_viewer_cannot_roll_back(api, tokens, promoted):
    response = api.post(f"{V1}/rollback", json={"reason": "worse"}, headers=_as(tokens, "vic"))

    assert response.status_code == 403
    assert _champion(promoted) == "2"


def test_an_operator_rolls_back_and_is_named_in_the_audit_log(api, tokens, promoted):
    from clm_lib import audit
    from clm_lib.db import session_scope

    response = api.post(f"{V1}/rollback", json={"reason": "answers got worse"}, headers=_as(tokens, "otto"))

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["from_version"], body["to_version"], body["slot"]) == ("2", "1", None)
    assert isinstance(body["warm"], bool) and body["switch_ms"] >= 0
    assert _champion(promoted) == "1"
    with session_scope(promoted.database_url) as s:
        move = audit.recent(s, action="alias.champion")[0]
        assert (move.actor, move.from_value, move.to_value) == ("airflow:otto", "2", "1")
        assert move.reason == "rollback: answers got worse"


def test_the_unversioned_rollback_still_works_and_is_deprecated(api, tokens, promoted):
    response = api.post(f"{API}/rollback", json={"reason": "old script"}, headers=_as(tokens, "ada"))

    assert response.status_code == 200, response.text
    assert response.json()["to_version"] == "1" and _champion(promoted) == "1"
    old = api.get(f"{API}/deployments", params={"limit": 5}, headers=_as(tokens, "vic")).json()
    assert [d["kind"] for d in old["deployments"]] == ["rollback", "promotion", "promotion"]

    from clm_api.app import create_app

    paths = create_app().openapi()["paths"]
    assert paths["/rollback"]["post"]["deprecated"] is True
    assert "deprecated" not in paths["/v1/rollback"]["post"]


def test_a_missing_database_is_a_503_that_names_it(api, tokens, airflow_fab, tmp_path, monkeypatch):
    missing = tmp_path / "gone" / "clm.db"
    monkeypatch.setenv("CLM_DATABASE_URL", f"sqlite:///{missing}")

    response = api.get(f"{V1}/deployments", headers=_as(tokens, "vic"))

    assert response.status_code == 503
    assert response.json()["detail"].startswith("clm's database cannot be read (since ")
    assert not missing.exists()


def _requests(cfg) -> list:
    from sqlalchemy import select

    from clm_lib.db import session_scope
    from clm_lib.db.models import AuditEntry

    with session_scope(cfg.database_url) as s:
        found = s.scalars(select(AuditEntry).where(AuditEntry.action == "promotion.requested")).all()
        return [(e.actor, e.target, e.to_value, e.reason, e.details) for e in found]


def test_the_next_promotion_reads_the_live_config_and_lists_what_may_be_promoted(api, tokens, promoted):
    body = api.get(f"{V1}/promotion/next", headers=_as(tokens, "vic")).json()

    assert (body["strategy"], body["steps"], body["rules"], body["champion"]) == ("alias", [], [], "2")
    assert "no serving slot is touched" in body["flow"] and body["busy"] is None and body["problem"] is None
    assert "more than 5 accuracy points" in body["gate"][0]
    [v1] = body["eligible"]
    assert (v1["version"], v1["aliases"], v1["evaluated"], v1["gate"]["passed"]) == ("1", ["previous"], True, True)

    # An operator changes the plan on the Configuration screen: the next promotion uses it, and this shows it.
    from clm_lib.airflow.settings import resolve_file_config
    from clm_lib.config_store import commit_change, live_revision
    from clm_lib.db import session_scope

    with session_scope(promoted.database_url) as s:
        file_cfg = resolve_file_config()
        base = live_revision(s, file_cfg).number
        changes = {"deploy.strategy": "canary", "deploy.bake_seconds": 7, "deploy.rules.max_error_rate": 0.02}
        commit_change(s, file_cfg=file_cfg, changes=changes, base_revision=base, actor="airflow:otto", reason="r")
    body = api.get(f"{V1}/promotion/next", headers=_as(tokens, "vic")).json()
    assert (body["strategy"], body["steps"], body["bake_seconds"]) == ("canary", [10, 50, 100], 7.0)
    assert body["config_revision"] == base + 1
    rules = {r["rule"]: r for r in body["rules"]}
    assert "at most 2.0% of the candidate's requests fail" in rules["error_rate"]["text"]
    assert rules["feedback"]["enabled"] is False and "10% → 50% → 100%" in body["flow"]


def test_an_operator_promotes_through_the_dag_and_it_is_audited(api, tokens, promoted, fake_airflow):
    response = api.post(f"{V1}/promote", json={"version": "1", "reason": "v1 was better at <b>billing</b>"},
                        headers=_as(tokens, "otto"))  # fmt: skip

    assert response.status_code == 202, response.text
    run_id = "manual__2026-12-07T10:00:00+00:00"
    assert response.json() == {"dag_id": "clm_promotion", "dag_run_id": run_id, "version": "1"}
    conf = {"version": "1", "reason": "v1 was better at <b>billing</b>"}
    assert fake_airflow.seen == [{"path": "/api/v2/dags/clm_promotion/dagRuns", "auth": f"Bearer {tokens['otto']}",
                                  "body": {"logical_date": None, "conf": conf}}]  # fmt: skip
    assert _requests(promoted) == [("airflow:otto", "clm_promotion", run_id, conf["reason"],
                                    {"dag_run_id": run_id, "conf": conf})]  # fmt: skip
    assert _champion(promoted) == "2"  # nothing moved: the DAG's gate decides


def test_a_viewer_cannot_promote_and_nothing_happens(api, tokens, promoted, fake_airflow):
    response = api.post(f"{V1}/promote", json={"version": "1", "reason": "please"}, headers=_as(tokens, "vic"))

    assert response.status_code == 403
    assert fake_airflow.seen == [] and _requests(promoted) == [] and _champion(promoted) == "2"


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ({"version": "99", "reason": "why"}, 404, "MLflow has no version 99"),
        ({"version": "2", "reason": "why"}, 409, "version 2 is already the champion"),
        ({"version": "v1", "reason": "why"}, 422, ["body", "version"]),
        ({"version": "1" * 33, "reason": "why"}, 422, ["body", "version"]),
        ({"version": "1", "reason": ""}, 422, ["body", "reason"]),
        ({"version": "1", "reason": "   "}, 422, ["body", "reason"]),
        ({"version": "1", "reason": "x" * 2001}, 422, ["body", "reason"]),
        ({"version": "1", "reason": "why", "force": True}, 422, ["body", "force"]),
        ({"reason": "why"}, 422, ["body", "version"]),
    ],
)
def test_a_refused_promotion_names_why_and_triggers_nothing(api, tokens, promoted, fake_airflow, body, status, says):
    response = api.post(f"{V1}/promote", json=body, headers=_as(tokens, "otto"))

    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    if status == 422:
        assert [e["loc"] for e in detail] == [says]
    else:
        assert says in detail
    assert fake_airflow.seen == [] and _requests(promoted) == []


def test_a_deployment_under_way_is_a_409(api, tokens, promoted, fake_airflow):
    from clm_lib.deploy.lock import holder_id, release, try_acquire

    holder = holder_id("a rollback in another process")
    assert try_acquire(promoted.database_url, holder, 60)
    try:
        response = api.post(f"{V1}/promote", json={"version": "1", "reason": "why"}, headers=_as(tokens, "otto"))
        shown = api.get(f"{V1}/promotion/next", headers=_as(tokens, "vic")).json()["busy"]
    finally:
        release(promoted.database_url, holder)

    assert response.status_code == 409 and "a rollback in another process" in response.json()["detail"]
    assert "a rollback in another process" in shown
    assert fake_airflow.seen == [] and _requests(promoted) == []


def test_airflows_refusal_of_a_promotion_is_passed_on_and_not_audited(api, tokens, promoted, fake_airflow):
    fake_airflow.answer = (403, {"detail": "Forbidden"})
    response = api.post(f"{V1}/promote", json={"version": "1", "reason": "why"}, headers=_as(tokens, "otto"))

    assert response.status_code == 403 and "Airflow refused to trigger clm_promotion" in response.json()["detail"]
    assert _requests(promoted) == []
