"""``/clm/api/v1/alerts``: filters and pages, one alert with its delivery attempts, acknowledge and resolve (operators
only, audited, 404 naming an unknown id), with the FAB auth manager and real users."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from clm_lib.alerts import raise_alert
from clm_lib.alerts.config import AlertsConfig
from clm_lib.alerts.delivery import deliver_pending
from clm_lib.db import session_scope, upgrade
from clm_lib.db.models import AuditEntry

API = "/clm/api/v1"
T0 = datetime(2026, 12, 7, 3, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def api(airflow_fab):
    from airflow.api_fastapi.app import create_app
    from fastapi.testclient import TestClient

    with TestClient(create_app(apps="core")) as client:
        yield client


@pytest.fixture
def alerts_db(tmp_path, monkeypatch) -> dict[str, int]:
    url = f"sqlite:///{tmp_path / 'clm.db'}"
    upgrade(url)
    monkeypatch.setenv("CLM_DATABASE_URL", url)
    ids = {}
    with session_scope(url) as s:
        for i, (kind, cause, severity) in enumerate([
            ("dag_failed", "dag_failed:clm_ingest", "critical"), ("gate_refused", "gate_refused:m/4", "warning"),
            ("drift_retrain", "drift_retrain:m", "warning"), ("store_unreachable", "store_unreachable:mlflow", "info"),
        ]):  # fmt: skip
            a = raise_alert(s, kind=kind, cause=cause, severity=severity, message=f"<b>{cause}</b> went wrong",
                            now=T0 + timedelta(minutes=i))  # fmt: skip
            s.flush()
            ids[cause] = a.id

    def down(_alert):
        raise ConnectionRefusedError("webhook down")

    cfg = AlertsConfig.model_validate({"webhook": {"enabled": True, "url": "http://127.0.0.1:9/x"}})
    deliver_pending(url, cfg, {"webhook": down}, now=T0 + timedelta(minutes=5))
    ids["url"] = url
    return ids


def _as(tokens, name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens[name]}"}


def test_list_filters_and_pages(api, tokens, alerts_db):
    viewer = _as(tokens, "vic")
    page = api.get(f"{API}/alerts", headers=viewer, params={"limit": 2}).json()
    assert (page["total"], len(page["items"]), page["status"]) == (4, 2, "open")
    assert [a["cause"] for a in page["items"]] == ["store_unreachable:mlflow", "drift_retrain:m"]
    assert {c["channel"]: c["state"] for c in page["channels"]}["webhook"] == "disabled"  # not enabled in clm.yaml
    critical = api.get(f"{API}/alerts", headers=viewer, params={"severity": "warning"}).json()
    assert {a["severity"] for a in critical["items"]} == {"critical", "warning"} and critical["total"] == 3
    only = api.get(f"{API}/alerts", headers=viewer, params={"kind": "gate_refused"}).json()
    assert [a["cause"] for a in only["items"]] == ["gate_refused:m/4"]
    bad = api.get(f"{API}/alerts", headers=viewer, params={"status": "<b>x</b>"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "status"]


def test_one_alert_with_its_delivery_attempts_and_404_naming_an_unknown_id(api, tokens, alerts_db):
    viewer = _as(tokens, "vic")
    a = api.get(f"{API}/alerts/{alerts_db['dag_failed:clm_ingest']}", headers=viewer).json()
    assert a["message"] == "<b>dag_failed:clm_ingest</b> went wrong" and a["state"] == "open"
    assert [(d["channel"], d["status"]) for d in a["deliveries"]] == [("webhook", "failed")]
    assert "webhook down" in a["deliveries"][0]["error"]
    missing = api.get(f"{API}/alerts/987654", headers=viewer)
    assert missing.status_code == 404 and "alert 987654" in missing.json()["detail"]


def test_acknowledge_and_resolve_need_an_operator_and_are_audited(api, tokens, alerts_db):
    alert_id = alerts_db["gate_refused:m/4"]
    assert api.post(f"{API}/alerts/{alert_id}/ack", headers=_as(tokens, "vic")).status_code == 403
    assert api.post(f"{API}/alerts/{alert_id}/ack").status_code == 401
    done = api.post(f"{API}/alerts/{alert_id}/ack", headers=_as(tokens, "uma"))
    assert done.status_code == 200 and done.json()["state"] == "acknowledged"
    assert done.json()["acknowledged_by"] == "airflow:uma"
    listed = api.get(f"{API}/alerts", headers=_as(tokens, "vic")).json()
    assert alert_id not in [a["id"] for a in listed["items"]]  # off the open list (and the Overview)
    resolved = api.post(f"{API}/alerts/{alert_id}/resolve", headers=_as(tokens, "uma"), json={"reason": "fixed"})
    assert resolved.status_code == 200 and resolved.json()["state"] == "resolved"
    assert api.post(f"{API}/alerts/987654/ack", headers=_as(tokens, "uma")).status_code == 404
    too_long = api.post(f"{API}/alerts/{alert_id}/resolve", headers=_as(tokens, "uma"), json={"reason": "x" * 3000})
    assert too_long.status_code == 422 and too_long.json()["detail"][0]["loc"] == ["body", "reason"]
    with session_scope(alerts_db["url"]) as s:
        actions = [(e.action, e.actor) for e in s.scalars(select(AuditEntry).order_by(AuditEntry.id))]
    assert actions == [("alert.acknowledged", "airflow:uma"), ("alert.resolved", "airflow:uma")]
