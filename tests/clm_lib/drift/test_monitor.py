"""Drift checks end to end against clm's database, on SQLite and PostgreSQL."""

from datetime import UTC, datetime, timedelta

import pytest

from clm_lib.db import session_scope
from clm_lib.db.models import AuditEntry, DriftReport, TrainingRun
from clm_lib.drift import Status, register_detector
from clm_lib.drift.config import DriftConfig
from clm_lib.drift.monitor import last_triggered, link_training_run, reports, run_drift_check
from clm_lib.drift.window import TextWindow

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
FAST = ["text_stats", "task_mix"]


@pytest.fixture
def db_cfg(cfg, db_url):
    cfg.database.url = db_url
    return cfg


def test_every_result_is_stored_with_the_decision(db_cfg, reference, new_vocabulary):
    decision = run_drift_check(db_cfg, reference=reference, current=new_vocabulary, new_rows=600,
                               settings=DriftConfig(), detectors=FAST, reference_version=3, current_version=5, now=NOW)
    assert decision.retrain and [r.detector for r in decision.reasons] == ["text_stats"]
    with session_scope(db_cfg.database_url) as s:
        rows = {r.detector: r for r in s.query(DriftReport).filter_by(check_id=decision.check_id)}
        assert set(rows) == {"text_stats", "task_mix", "volume"}
        stats = rows["text_stats"]
        assert stats.drift is True and stats.triggered and stats.retrain_requested
        assert stats.status == "ok" and stats.threshold == 0.01 and stats.p_value < 0.01
        assert stats.details["features"]["oov_rows"]["current_share"] > 0.2
        assert (stats.reference_version, stats.current_version) == (3, 5)
        assert rows["task_mix"].drift is False and not rows["task_mix"].triggered
        assert rows["volume"].statistic == 600 and rows["volume"].drift is False
        audit = s.query(AuditEntry).filter_by(action="drift.retrain_requested").one()
        assert decision.check_id in audit.target and "text_stats" in audit.reason


def test_cooldown_is_read_from_the_database(db_cfg, reference, new_vocabulary):
    first = run_drift_check(db_cfg, reference=reference, current=new_vocabulary, settings=DriftConfig(),
                            detectors=FAST, now=NOW)
    second = run_drift_check(db_cfg, reference=reference, current=new_vocabulary, settings=DriftConfig(),
                             detectors=FAST, now=NOW + timedelta(hours=1))
    assert first.retrain and not second.retrain
    with session_scope(db_cfg.database_url) as s:
        assert set(last_triggered(s)) == {"text_stats"}
        row = s.query(DriftReport).filter_by(check_id=second.check_id, detector="text_stats").one()
        assert row.drift is True and not row.triggered and "cooldown" in row.suppressed_reason
        series = reports(s, detector="text_stats")
        assert [r.check_id for r in series] == [second.check_id, first.check_id]


def test_bad_input_is_stored_as_insufficient_never_as_no_drift(db_cfg, reference):
    decision = run_drift_check(db_cfg, reference=reference, current=[], settings=DriftConfig(), detectors=FAST)
    assert not decision.retrain
    with session_scope(db_cfg.database_url) as s:
        rows = s.query(DriftReport).filter_by(check_id=decision.check_id).all()
        assert {r.status for r in rows} == {"insufficient data"}
        assert all(r.drift is None for r in rows)


def test_a_failing_detector_is_reported_and_the_others_still_run(db_cfg, reference, same, request):
    from clm_lib.drift import DETECTORS, Detector

    class Broken(Detector):
        def _check(self, reference, current, context):
            raise RuntimeError("boom")

    register_detector(name="test_broken", detector_cls=Broken)
    request.addfinalizer(lambda: DETECTORS.unregister("test_broken"))
    decision = run_drift_check(db_cfg, reference=reference, current=same, settings=DriftConfig(),
                               detectors=["test_broken", "task_mix"])
    by_name = {r.detector: r for r in decision.results}
    assert by_name["test_broken"].status == Status.ERROR and "boom" in by_name["test_broken"].explanation
    assert by_name["task_mix"].drift is False


def test_link_training_run_ties_the_trigger_to_the_run(db_cfg, reference, new_vocabulary):
    decision = run_drift_check(db_cfg, reference=reference, current=new_vocabulary, settings=DriftConfig(),
                               detectors=FAST)
    with session_scope(db_cfg.database_url) as s:
        s.add(TrainingRun(id="run-1", status="running", base_model="b", config_hash="h",
                          trigger=decision.to_dict()))
    assert link_training_run(db_cfg, decision.check_id, "run-1") == 1
    with session_scope(db_cfg.database_url) as s:
        row = s.query(DriftReport).filter_by(training_run_id="run-1").one()
        assert row.detector == "text_stats"
        assert s.get(TrainingRun, "run-1").trigger["reasons"][0]["detector"] == "text_stats"


def test_windows_can_be_tables_records_or_windows(db_cfg, reference, same):
    table = same.to_table()
    decision = run_drift_check(db_cfg, reference=reference, current=table, settings=DriftConfig(), detectors=FAST,
                               store=False)
    assert not decision.retrain
    assert isinstance(TextWindow.coerce(table), TextWindow)


def test_settings_default_to_the_config_file(db_cfg, reference, same):
    db_cfg.drift.volume.min_new_rows = 5
    decision = run_drift_check(db_cfg, reference=reference, current=same, new_rows=5, detectors=FAST)
    assert decision.retrain and [r.detector for r in decision.reasons] == ["volume"]


def test_pending_requests_are_those_no_training_took_up(db_cfg, reference, new_vocabulary, same):
    from clm_lib.db import session_scope as scope
    from clm_lib.drift.monitor import pending_requests

    quiet = run_drift_check(db_cfg, reference=reference, current=same, settings=DriftConfig(), detectors=FAST, now=NOW)
    first = run_drift_check(db_cfg, reference=reference, current=new_vocabulary, settings=DriftConfig(),
                            detectors=FAST, now=NOW + timedelta(minutes=1))
    assert not quiet.retrain and first.retrain
    pending = pending_requests(db_cfg, NOW - timedelta(hours=1))
    assert [p["check_id"] for p in pending] == [first.check_id]
    assert pending[0]["reasons"][0]["detector"] == "text_stats"
    assert datetime.fromisoformat(pending[0]["created_at"]) == NOW + timedelta(minutes=1)
    assert pending_requests(db_cfg, NOW + timedelta(minutes=1)) == []  # strictly newer than `since`
    with scope(db_cfg.database_url) as s:
        s.add(TrainingRun(id="run-1", status="succeeded", base_model="b", config_hash="h"))
    link_training_run(db_cfg, first.check_id, "run-1")
    assert pending_requests(db_cfg, NOW - timedelta(hours=1)) == []
