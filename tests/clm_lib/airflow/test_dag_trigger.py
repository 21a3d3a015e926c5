"""One reasoned, audited DAG trigger, against a loopback HTTP server standing in for Airflow's REST API."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from clm_lib.airflow.dag_trigger import MAX_REASON, RunRefused, airflow_problem, request_run
from clm_lib.db import session_scope
from clm_lib.db.models import AuditEntry
from clm_lib.reporting.stores import StoreDown
from clm_lib.services.airflow_client import AirflowAPIError
from tests.clm_lib.reporting.training_history import HOSTILE, fake_airflow_server


@pytest.fixture
def fake_airflow():
    with fake_airflow_server() as served:
        yield served


def _audit(url: str) -> list[AuditEntry]:
    with session_scope(url) as s:
        entries = list(s.scalars(select(AuditEntry)))
        s.expunge_all()
        return entries


def test_the_run_carries_the_reason_and_the_audit_entry_its_id(cfg, sqlite_url, fake_airflow):
    cfg.database.url = sqlite_url
    url, airflow = fake_airflow
    run_id = request_run(cfg, "clm_promotion", {"version": "3"}, airflow_url=url, token="op-jwt",
                         reason=f" {HOSTILE} ", actor="airflow:otto", action="promotion.requested")  # fmt: skip

    assert run_id == "manual__2026-12-07T10:00:00+00:00"
    assert airflow.seen == [{"path": "/api/v2/dags/clm_promotion/dagRuns", "auth": "Bearer op-jwt",
                             "body": {"logical_date": None, "conf": {"version": "3", "reason": HOSTILE}}}]  # fmt: skip
    [entry] = _audit(sqlite_url)
    assert (entry.action, entry.target, entry.actor, entry.to_value, entry.reason) == (
        "promotion.requested", "clm_promotion", "airflow:otto", run_id, HOSTILE)  # fmt: skip
    assert entry.details == {"dag_run_id": run_id, "conf": {"version": "3", "reason": HOSTILE}}


@pytest.mark.parametrize("reason", ["", "   ", "x" * (MAX_REASON + 1)])
def test_a_bad_reason_asks_nothing_of_airflow(cfg, sqlite_url, fake_airflow, reason):
    cfg.database.url = sqlite_url
    url, airflow = fake_airflow
    with pytest.raises(RunRefused):
        request_run(cfg, "clm_rollback", {}, airflow_url=url, token="t", reason=reason, actor="a", action="x")
    assert airflow.seen == [] and _audit(sqlite_url) == []


def test_no_database_triggers_nothing(cfg, fake_airflow):
    url, airflow = fake_airflow
    with pytest.raises(StoreDown):
        request_run(cfg, "clm_rollback", {}, airflow_url=url, token="t", reason="why", actor="a", action="x")
    assert airflow.seen == []


def test_airflows_refusal_is_not_audited_and_is_answered_by_its_kind(cfg, sqlite_url, fake_airflow):
    cfg.database.url = sqlite_url
    url, airflow = fake_airflow
    airflow.answer = (409, {"detail": "already exists"})
    with pytest.raises(AirflowAPIError) as refused:
        request_run(cfg, "clm_promotion", {"version": "2"}, airflow_url=url, token="t", reason="why", actor="a",
                    action="promotion.requested")  # fmt: skip
    assert _audit(sqlite_url) == []
    assert airflow_problem(refused.value, "clm_promotion")[0] == 409
    assert airflow_problem(AirflowAPIError("POST /x -> HTTP 403: no"), "clm_promotion") == (
        403, "Airflow refused to trigger clm_promotion for you: POST /x -> HTTP 403: no")  # fmt: skip
    assert airflow_problem(AirflowAPIError("connection refused"), "clm_promotion")[0] == 503
