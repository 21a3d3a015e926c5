"""The drift screen's data: read from stored drift reports on SQLite and PostgreSQL, tolerant of a fresh install."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta

import pytest

from clm_lib.db import session_scope
from clm_lib.db.models import DriftReport, TrainingRun
from clm_lib.reporting import build_drift

T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
COOLDOWN = "fired within its 24 h cooldown (it last triggered a retraining at 2026-11-20 14:00; quiet until ...)"
ALERT_ONLY = "fired but is set to alert only (trigger: false)"


def _report(check: str, hours: int, detector: str, **kw) -> DriftReport:
    kw.setdefault("status", "ok")
    kw.setdefault("explanation", f"{detector} in {check}")
    versions = {"reference_version": kw.pop("ref", 3), "current_version": kw.pop("cur", 5)}
    return DriftReport(check_id=check, detector=detector, created_at=T0 + timedelta(hours=hours), n_reference=600,
                       n_current=600, **versions, **kw)  # fmt: skip


def seed_checks(url: str) -> None:
    """Five checks, one per three hours:

    c1 first training (volume fired) -> tr-1 / v1; c2 nothing moved; c3 too few rows for the tests;
    c4 task_mix fired (text_stats too, alert only) -> tr-2 / v2; c5 task_mix fired again, in its cooldown."""
    p = {"threshold": 0.01}
    with session_scope(url) as s:
        s.add_all(
            [
                TrainingRun(id="tr-1", status="succeeded", model_version="1", base_model="b", config_hash="h"),
                TrainingRun(id="tr-2", status="succeeded", model_version="2", base_model="b", config_hash="h",
                            airflow_dag_id="clm_continual_training", airflow_run_id="asset_triggered__2026-11-20"),
            ]
        )  # fmt: skip
        s.flush()
        s.add_all(
            [
                _report("c1", 0, "task_mix", drift=None, status="insufficient data", retrain_requested=True, ref=None),
                _report("c1", 0, "volume", drift=True, statistic=300, threshold=200, triggered=True,
                        retrain_requested=True, training_run_id="tr-1", ref=None),
                _report("c2", 3, "task_mix", drift=False, statistic=2.1, p_value=0.62, **p),
                _report("c2", 3, "text_stats", drift=False, statistic=0.03, p_value=0.9, **p),
                _report("c2", 3, "volume", drift=False, statistic=400, threshold=2000),
                _report("c3", 6, "task_mix", drift=None, status="insufficient data"),
                _report("c3", 6, "text_stats", drift=None, status="insufficient data"),
                _report("c3", 6, "volume", drift=False, statistic=40, threshold=2000),
                _report("c4", 9, "task_mix", drift=True, statistic=193.7, p_value=8.6e-43, **p, triggered=True,
                        retrain_requested=True, training_run_id="tr-2", champion_version="1"),
                _report("c4", 9, "text_stats", drift=True, statistic=0.4, p_value=2e-5, **p,
                        retrain_requested=True, suppressed_reason=ALERT_ONLY, champion_version="1"),
                _report("c4", 9, "volume", drift=False, statistic=700, threshold=2000, retrain_requested=True),
                _report("c5", 12, "task_mix", drift=True, statistic=120.0, p_value=1e-20, **p,
                        suppressed_reason=COOLDOWN, champion_version="2", ref=6, cur=9),
                _report("c5", 12, "text_stats", drift=False, statistic=0.02, p_value=0.4, **p, champion_version="2"),
                _report("c5", 12, "volume", drift=False, statistic=900, threshold=2000, champion_version="2"),
            ]
        )  # fmt: skip


@pytest.fixture
def page_cfg(cfg, db_url):
    cfg.database.url = db_url
    seed_checks(db_url)
    return cfg


def test_fresh_install_reads_well_and_creates_nothing(cfg):
    page = build_drift(cfg)

    assert "clm init" in page.database_problem
    assert page.checks == [] and page.latest is None and page.alerts == [] and page.decisions is None
    assert [d.detector for d in page.detectors] == ["embedding_mmd", "text_stats", "task_mix", "perplexity",
                                                    "concept", "volume"]  # fmt: skip
    assert all(d.chart is None and d.latest is None for d in page.detectors)
    assert not (cfg.home / "clm.db").exists()


def test_an_unmigrated_database_is_explained(cfg, tmp_path):
    path = tmp_path / "old.db"
    sqlite3.connect(path).execute("CREATE TABLE unrelated (id INTEGER)").connection.close()
    cfg.database.url = f"sqlite:///{path}"

    page = build_drift(cfg)

    assert page.database_problem.startswith("cannot read clm's database") and "clm init" in page.database_problem
    assert page.checks == []


def test_latest_decision(page_cfg):
    page = build_drift(page_cfg)

    assert page.database_problem is None
    assert [c.check_id for c in page.checks] == ["c1", "c2", "c3", "c4", "c5"]  # oldest first, as plotted
    latest = page.latest
    assert latest.check_id == "c5" and not latest.retrain_requested
    assert latest.checked_at == T0 + timedelta(hours=12)
    assert [(v.detector, v.suppressed_as) for v in latest.suppressed] == [("task_mix", "cooldown")]
    assert (latest.reference_version, latest.current_version, latest.champion_version) == (6, 9, "2")
    assert latest.summary == "no retraining: task_mix cooldown"
    assert (page.retrains_requested, page.retrains_started, page.checks_with_alerts) == (2, 2, 3)


def test_series_per_detector(page_cfg):
    page = build_drift(page_cfg)
    by_name = {d.detector: d for d in page.detectors}

    mix = by_name["task_mix"]
    assert mix.measure == "p-value" and (mix.checks, mix.fired, mix.triggered, mix.unjudged) == (5, 2, 1, 2)
    assert mix.latest.p_value == 1e-20 and mix.latest_value == "1e-20" and mix.threshold_value == "0.01"
    chart = mix.chart
    assert [m.classes for m in chart.marks] == ["pt pt-na", "pt pt-ok", "pt pt-na", "pt pt-drift", "pt pt-drift"]
    assert [m.halo is not None for m in chart.marks] == [False, False, False, True, False]  # only c4 retrained
    # Up is more alarming: the drifted checks sit above the alpha line, the quiet one below it.
    alpha_y = chart.threshold_label_y
    ys = [_y(m.d) for m in chart.marks]
    assert ys[3] < alpha_y and ys[4] < alpha_y < ys[1]
    assert ys[0] == ys[2] > alpha_y  # nothing measured: a hollow mark on the baseline, never above the line
    assert chart.threshold_label == "\N{GREEK SMALL LETTER ALPHA} 0.01"
    assert [len(line.split()) for line in chart.lines] == [2]  # c2 stands alone; c4-c5 are joined
    assert chart.y_ticks[0].label == "1" and chart.y_ticks[-1].label == "1e-10"  # 8.6e-43 is off the scale

    volume = by_name["volume"]
    assert volume.measure == "statistic" and volume.unit == "new rows" and volume.latest_value == "900"
    assert volume.chart.threshold_label == "≥ 2k" and len(volume.chart.lines) == 1  # measured in every check
    assert len({xy.split(",")[1] for xy in volume.chart.threshold.split()}) == 2  # 200 for the first training, 2000
    assert by_name["perplexity"].chart is None and by_name["perplexity"].policy.describe == "alert only"
    assert by_name["task_mix"].policy.describe == "triggers retraining · 24 h cooldown"


def test_alerts_link_the_training_run_and_version(page_cfg):
    page = build_drift(page_cfg)

    assert [a.check_id for a in page.alerts] == ["c5", "c4", "c1"]  # newest first; c2 and c3 fired nothing
    c5, c4, c1 = page.alerts
    assert c5.training is None and [v.detector for v in c5.fired] == ["task_mix"]
    assert [(v.detector, v.triggered, v.suppressed_as) for v in c4.fired] == [
        ("task_mix", True, None), ("text_stats", False, "alert only")
    ]  # fmt: skip
    t = c4.training
    assert (t.training_run_id, t.status, t.model_version) == ("tr-2", "succeeded", "2")
    assert (t.airflow_dag_id, t.airflow_run_id) == ("clm_continual_training", "asset_triggered__2026-11-20")
    assert c4.summary == "retrain requested by task_mix → tr-2 (v2)"
    assert c1.training.model_version == "1" and c1.reference_version is None
    strip = page.decisions
    assert [m.classes for m in strip.marks] == ["pt pt-drift", "pt pt-ok", "pt pt-ok", "pt pt-drift", "pt pt-quiet"]
    assert [n.text for n in strip.notes] == ["v1", "v2"]


def test_alerts_reach_past_the_plotted_checks(page_cfg):
    page = build_drift(page_cfg, max_checks=2)

    assert [c.check_id for c in page.checks] == ["c4", "c5"]
    assert [a.check_id for a in page.alerts] == ["c5", "c4", "c1"]
    assert len(page.detectors[2].chart.marks) == 2


def test_checks_stored_by_the_monitor(cfg, db_url):
    from clm_lib.demo.stream import generate_task
    from clm_lib.drift.config import DriftConfig
    from clm_lib.drift.monitor import link_training_run, run_drift_check

    cfg.database.url = db_url
    old = [r for t in ("routers", "billing") for r in generate_task(t, 150, seed=1)]
    new = [r for t in ("routers", "thermostats") for r in generate_task(t, 150, seed=2)]
    fast = ["text_stats", "task_mix"]
    quiet = run_drift_check(cfg, reference=old, current=old[::-1], new_rows=300, settings=DriftConfig(),
                            detectors=fast, now=T0)  # fmt: skip
    moved = run_drift_check(cfg, reference=old, current=new, new_rows=300, settings=DriftConfig(), detectors=fast,
                            current_version=7, now=T0 + timedelta(hours=1))  # fmt: skip
    with session_scope(db_url) as s:
        s.add(TrainingRun(id="tr-9", status="running", model_version=None, base_model="b", config_hash="h"))
    assert link_training_run(cfg, moved.check_id, "tr-9") >= 1

    page = build_drift(cfg)

    assert [c.check_id for c in page.checks] == [quiet.check_id, moved.check_id]
    assert page.latest.retrain_requested and page.latest.current_version == 7
    assert {v.detector for v in page.latest.reasons} == {v.detector for v in moved.reasons} >= {"task_mix"}
    mix = next(d for d in page.detectors if d.detector == "task_mix")
    assert mix.latest.p_value < 0.01 and _y(mix.chart.marks[-1].d) < mix.chart.threshold_label_y
    assert [m.classes for m in mix.chart.marks] == ["pt pt-ok", "pt pt-drift"] and len(mix.chart.lines) == 1
    assert page.alerts[0].training.training_run_id == "tr-9" and page.alerts[0].training.status == "running"


def _y(path: str) -> float:
    """The height of a mark path's value: a circle starts at its left point, an off-scale triangle 4 above it."""
    circle = "a" in path
    y = float(path[1:].split("a" if circle else "L")[0].split(",")[1])
    return y if circle else y + 4
