"""The Overview's health per stage, forgetting trend and open alerts, on the seeded history plus failures."""

from __future__ import annotations

from datetime import timedelta

import pytest

from clm_lib import audit
from clm_lib.alerts import acknowledge, raise_alert
from clm_lib.db import session_scope
from clm_lib.db.models import Deployment, DriftReport, IngestionBatch, TrainingRun
from clm_lib.reporting import build_overview
from clm_lib.reporting.alerts import ALERT_KINDS, open_alerts
from tests.clm_lib.reporting.conftest import MODEL, T0
from tests.clm_lib.reporting.test_overview import _cfg


@pytest.fixture
def home(tmp_path, monkeypatch, clean_env):
    monkeypatch.setenv("CLM_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def add_failures(db_url: str) -> None:
    """After the seeded history: a rolled-back promotion, a guard breach, a batch given up, an interrupted run,
    a drift check that worked and one that failed after it."""
    with session_scope(db_url) as s:
        s.add(Deployment(kind="promotion", model_name=MODEL, version="2", from_version="1", strategy="canary",
                         status="promoted", actor="a", started_at=T0 + timedelta(days=1, hours=4),
                         finished_at=T0 + timedelta(days=1, hours=5)))
        s.add(Deployment(kind="promotion", model_name=MODEL, version="3", from_version="2", strategy="canary",
                         status="rolled_back", actor="a", outcome="error rate 0.4 > 0.05",
                         started_at=T0 + timedelta(days=5), finished_at=T0 + timedelta(days=5, minutes=9)))
        s.add(IngestionBatch(id="b-3", source="landing/<script>x</script>.jsonl", source_format="jsonl",
                             file_sha256="c" * 64, status="gave_up", error="crashed twice",
                             started_at=T0 + timedelta(days=4), finished_at=T0 + timedelta(days=4, minutes=1)))
        s.add(IngestionBatch(id="b-4", source="landing/late.jsonl", source_format="jsonl", file_sha256="d" * 64,
                             status="failed", started_at=T0 + timedelta(days=4, hours=2)))
        s.add(TrainingRun(id="tr-005", status="interrupted", base_model="b", config_hash="h",
                          started_at=T0 + timedelta(days=6)))
        for i, status in enumerate(("ok", "error")):
            s.add(DriftReport(check_id=f"c-{i}", detector="volume", status=status,
                              created_at=T0 + timedelta(days=3, hours=i)))
        audit.record(s, action="alert", target=f"{MODEL}/3", actor="clm:guard", reason="p95 latency 9 s > 2 s",
                     details={"kind": "guard_breach"})  # fmt: skip
        for kind, cause, severity, message, days in ALERTS:
            raise_alert(s, kind=kind, cause=cause, severity=severity, message=message,
                        links=[{"label": "Serving", "href": "/pluginsv2/clm/serving"}],
                        now=T0 + timedelta(days=days) if days is not None else None)  # fmt: skip


ALERTS = [
    ("gate_refused", f"gate_refused:{MODEL}/3", "warning", "gate refused v3: billing REGRESSED", 5),
    ("rollback", f"rollback:{MODEL}/3", "critical", "v3 rolled back automatically: error rate 0.4 > 0.05", 5.01),
    ("dag_failed", "dag_failed:clm_ingest", "critical", "clm_ingest run r-1 failed: crashed twice", 4),
    ("dag_failed", "dag_failed:clm_continual_training", "critical", "training run tr-005 interrupted", 6),
    ("dag_failed", "dag_failed:clm_ingest", "critical", "clm_ingest run r-2 failed: crashed twice", 4.1),
    ("guard_breach", f"guard_breach:{MODEL}/3", "critical", "p95 latency 9 s > 2 s", None),
]
"""Open alerts after :func:`add_failures`: five causes (clm_ingest failed twice: one alert, seen twice); the guard's
is raised now, so it is the most recently seen."""


def test_health_per_stage_says_since_when_it_fails(home, history_db):
    add_failures(history_db)
    o = build_overview(_cfg(home, db_url=history_db))
    health = {h.stage: h for h in o.health}

    assert list(health) == ["ingestion", "drift", "training", "serving"]
    ing = health["ingestion"]
    assert (ing.state, ing.failures_since_success) == ("failing", 2)
    assert ing.last_success == T0 + timedelta(days=2) and ing.failing_since == T0 + timedelta(days=4)
    assert ing.last_failure == T0 + timedelta(days=4, hours=2) and ing.screen == "/ingestion"
    assert (health["drift"].state, health["drift"].failing_since) == ("failing", T0 + timedelta(days=3, hours=1))
    tr = health["training"]
    assert (tr.state, tr.failures_since_success) == ("failing", 2)  # tr-004 failed, tr-005 interrupted
    assert tr.last_success == T0 + timedelta(days=2, hours=1)
    sv = health["serving"]
    assert (sv.state, sv.last_success, sv.failing_since) == ("failing", T0 + timedelta(days=1, hours=4),
                                                              T0 + timedelta(days=5))  # fmt: skip


def test_a_stage_that_never_ran_and_one_that_recovered(home, history_db):
    with session_scope(history_db) as s:
        s.add(IngestionBatch(id="b-0", source="x", source_format="jsonl", file_sha256="e" * 64, status="failed",
                             started_at=T0 - timedelta(days=1)))  # fmt: skip
    health = {h.stage: h for h in build_overview(_cfg(home, db_url=history_db)).health}

    assert (health["ingestion"].state, health["ingestion"].failures_since_success) == ("ok", 0)
    assert health["ingestion"].last_failure == T0 - timedelta(days=1) and health["ingestion"].failing_since is None
    assert health["drift"].state == health["serving"].state == "never"


def test_forgetting_trend_has_one_point_per_version(home, history_db):
    trend = build_overview(_cfg(home, db_url=history_db)).trend

    assert [(p.model_version, p.average_accuracy, p.backward_transfer) for p in trend.points] == [
        ("1", 91.0, None), ("2", 89.25, -3.0), ("3", 83.17, -12.5)
    ]  # fmt: skip
    assert [t.label for t in trend.aa_chart.x_ticks] == ["v1", "v2", "v3"]
    assert len(trend.aa_chart.marks) == 3 and trend.aa_chart.lines
    assert "BWT -12.5" in trend.forgetting_chart.marks[2].title
    y = [m.d for m in trend.forgetting_chart.marks]
    assert y[1] != y[2]  # more forgotten sits higher


def test_open_alerts_most_recently_seen_first_one_per_cause(home, history_db):
    add_failures(history_db)
    o = build_overview(_cfg(home, db_url=history_db), max_alerts=20)

    assert {a.kind for a in o.alerts} <= set(ALERT_KINDS)
    assert [a.cause for a in o.alerts] == [
        f"guard_breach:{MODEL}/3", "dag_failed:clm_continual_training", f"rollback:{MODEL}/3",
        f"gate_refused:{MODEL}/3", "dag_failed:clm_ingest",
    ]  # fmt: skip
    by = {a.cause: a for a in o.alerts}
    assert by["dag_failed:clm_ingest"].count == 2 and "r-2" in by["dag_failed:clm_ingest"].message
    assert by[f"gate_refused:{MODEL}/3"].links == [{"label": "Serving", "href": "/pluginsv2/clm/serving"}]


def test_alerts_filter_and_limit_and_acknowledged_ones_leave_the_overview(history_db):
    add_failures(history_db)
    with session_scope(history_db) as s:
        assert [a.cause for a in open_alerts(s, kind="dag_failed")] == [
            "dag_failed:clm_continual_training", "dag_failed:clm_ingest"
        ]  # fmt: skip
        assert len(open_alerts(s, limit=2)) == 2
        acknowledge(s, open_alerts(s, kind="rollback")[0].id, "airflow:ada")
    with session_scope(history_db) as s:
        assert open_alerts(s, kind="rollback") == []
