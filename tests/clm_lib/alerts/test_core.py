"""Alerts as rows: one open alert per cause, acknowledged (audited) and resolved."""

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from clm_lib.alerts import AlertNotFound, Link, acknowledge, raise_alert, record_alert, resolve, resolve_cause
from clm_lib.db import session_scope
from clm_lib.db.models import Alert, AuditEntry

T0 = datetime(2026, 12, 7, 3, 0, tzinfo=UTC)


def _raise(s, cause="dag_failed:clm_ingest", severity="critical", message="boom", at=T0):
    return raise_alert(s, kind="dag_failed", cause=cause, severity=severity, message=message,
                       links=[Link("Run", "/dags/clm_ingest")], now=at)  # fmt: skip


def test_same_cause_bumps_the_open_alert_instead_of_adding_one(db_url):
    with session_scope(db_url) as s:
        first = _raise(s).id
    with session_scope(db_url) as s:
        again = _raise(s, message="boom again", at=T0 + timedelta(minutes=5))
        other = _raise(s, cause="dag_failed:clm_promotion")
    with session_scope(db_url) as s:
        rows = s.scalars(select(Alert).order_by(Alert.id)).all()
        assert [r.cause for r in rows] == ["dag_failed:clm_ingest", "dag_failed:clm_promotion"]
        assert again.id == first and other.id != first
        bumped = s.get(Alert, first)
        assert bumped.count == 2 and bumped.message == "boom again"
        assert bumped.last_seen.replace(tzinfo=UTC) == T0 + timedelta(minutes=5)
        assert bumped.first_seen.replace(tzinfo=UTC) == T0
        assert bumped.links == [{"label": "Run", "href": "/dags/clm_ingest"}]


def test_a_recurrence_never_lowers_the_severity(db_url):
    with session_scope(db_url) as s:
        _raise(s, severity="critical")
        assert _raise(s, severity="warning").severity == "critical"


def test_concurrent_writers_keep_one_open_alert_per_cause(db_url):
    ids, errors = [], []

    def write():
        try:
            ids.append(record_alert(db_url, kind="store_unreachable", cause="store_unreachable:mlflow",
                                    severity="critical", message="down"))  # fmt: skip
        except Exception as exc:  # pragma: no cover - the assertion below names it
            errors.append(exc)

    threads = [threading.Thread(target=write) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    with session_scope(db_url) as s:
        rows = s.scalars(select(Alert)).all()
    assert not errors and len(rows) == 1
    assert rows[0].count == sum(1 for i in ids if i is not None) and rows[0].count >= 1


def test_acknowledge_is_audited_once_and_keeps_the_alert_open(db_url):
    with session_scope(db_url) as s:
        alert_id = _raise(s).id
    with session_scope(db_url) as s:
        acknowledge(s, alert_id, "airflow:alice")
        acknowledge(s, alert_id, "airflow:bob")
    with session_scope(db_url) as s:
        a = s.get(Alert, alert_id)
        assert a.acknowledged_by == "airflow:alice" and a.resolved_at is None
        entries = s.scalars(select(AuditEntry).where(AuditEntry.action == "alert.acknowledged")).all()
        assert [(e.actor, e.target) for e in entries] == [("airflow:alice", f"alert:{alert_id}")]
        assert _raise(s).id == alert_id  # acknowledged but open: still absorbs recurrences


def test_resolving_frees_the_cause(db_url):
    with session_scope(db_url) as s:
        alert_id = _raise(s).id
    with session_scope(db_url) as s:
        resolve(s, alert_id, "airflow:alice", reason="fixed the disk")
    with session_scope(db_url) as s:
        assert _raise(s).id != alert_id
        assert resolve_cause(s, "dag_failed:clm_ingest", "clm:health") is not None
        assert resolve_cause(s, "dag_failed:clm_ingest", "clm:health") is None
        assert s.scalars(select(AuditEntry).where(AuditEntry.action == "alert.resolved")).all()


def test_unknown_alert_and_bad_values_are_named(db_url):
    with session_scope(db_url) as s:
        with pytest.raises(AlertNotFound, match="alert 999"):
            acknowledge(s, 999, "airflow:alice")
        with pytest.raises(ValueError, match="severity"):
            _raise(s, severity="loud")
    assert record_alert(db_url, kind="nonsense", cause="x", severity="info", message="m") is None


def test_secrets_in_messages_are_redacted(db_url):
    with session_scope(db_url) as s:
        a = _raise(s, message="cannot reach postgresql://clm:hunter2@db/clm")
        assert "hunter2" not in a.message


def test_the_reported_kinds_are_the_raised_kinds():
    from clm_lib.alerts import KINDS
    from clm_lib.reporting.alerts import AlertKind

    assert AlertKind.__args__ == KINDS
