"""Performance & drift from a real clm database: per-task accuracy across versions, serving minutes aggregated per
version over a window, drift verdicts per detector with their thresholds, and the page's charts and filters."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from clm_lib.db import session_scope
from clm_lib.db.models import DriftReport, Evaluation, ServingMetric, TrainingRun
from clm_lib.reporting.performance import BadFilter, drift_history, serving_series, task_matrix
from clm_lib.reporting.performance_page import build_performance
from clm_lib.reporting.stores import StoreDown

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def add_version(s, version: str, tasks: list[str], scores: dict[str, float], at: datetime) -> None:
    run = f"run-{version}"
    s.add(TrainingRun(id=run, status="succeeded", base_model="tiny", config_hash="h", model_version=version))
    s.flush()
    aa = sum(scores.values()) / len(scores)
    s.add(Evaluation(training_run_id=run, model_version=version, tasks=tasks, scores=scores, average_accuracy=aa,
                     backward_transfer=None, created_at=at))  # fmt: skip


def minute(s, at: datetime, version: str, slot: str, requests: int, errors: int, p50: float, p95: float,
           ratings: tuple[int, float] = (0, 0.0)) -> None:  # fmt: skip
    s.add(ServingMetric(bucket_start=at, model_version=version, slot=slot, requests=requests, errors=errors,
                        latency_p50_ms=p50, latency_p95_ms=p95, latency_samples=requests, feedback_count=ratings[0],
                        feedback_sum=ratings[1]))  # fmt: skip


@pytest.fixture
def filled(cfg, sqlite_url):
    cfg.database.url = sqlite_url
    with session_scope(sqlite_url) as s:
        add_version(s, "1", ["qa"], {"qa": 90.0}, NOW - timedelta(days=3))
        add_version(s, "2", ["qa", "sum"], {"qa": 70.0, "sum": 85.0}, NOW - timedelta(days=2))
        add_version(s, "10", ["qa", "sum", "code"], {"qa": 80.0, "sum": 84.0, "code": 60.0}, NOW - timedelta(days=1))
        # Two minutes of v2 on blue and one of v10 on green, inside the last hour; one v2 minute a day ago.
        minute(s, NOW - timedelta(minutes=30), "2", "blue", 60, 3, 10.0, 40.0, (4, 3.0))
        minute(s, NOW - timedelta(minutes=29), "2", "blue", 20, 0, 20.0, 80.0)
        minute(s, NOW - timedelta(minutes=30), "10", "green", 10, 5, 30.0, 90.0, (2, 0.5))
        minute(s, NOW - timedelta(hours=20), "2", "blue", 5, 0, 5.0, 6.0)
        for i, (p, drift) in enumerate([(0.5, False), (0.001, True)]):
            s.add(DriftReport(check_id=f"c{i}", detector="embedding_mmd", status="ok", drift=drift, p_value=p,
                              threshold=0.01, created_at=NOW - timedelta(hours=2 - i)))  # fmt: skip
        s.add(DriftReport(check_id="c1", detector="volume", status="ok", drift=False, statistic=40.0, threshold=100.0,
                          created_at=NOW - timedelta(hours=1)))  # fmt: skip
    return cfg


def test_task_matrix_is_per_task_accuracy_across_versions_in_version_order(filled):
    with session_scope(filled.database_url) as s:
        m = task_matrix(s)
        assert [v.model_version for v in m.versions] == ["1", "2", "10"]  # 10 after 2: numeric order
        assert m.tasks == ["qa", "sum", "code"] and m.learned_at == {"qa": 0, "sum": 1, "code": 2}
        assert m.versions[0].scores == {"qa": 90.0, "sum": None, "code": None}
        assert m.versions[2].scores["code"] == 60.0
        assert [v.model_version for v in task_matrix(s, max_versions=2).versions] == ["2", "10"]
        with pytest.raises(BadFilter, match="max_versions"):
            task_matrix(s, max_versions=0)


def test_serving_series_aggregates_minutes_per_version(filled):
    with session_scope(filled.database_url) as s:
        series = serving_series(s, NOW - timedelta(hours=1), NOW)
        assert series.step_s == 60 and series.versions == ["2", "10"] and not series.truncated
        v2 = {t.model_version: t for t in series.totals}["2"]
        assert (v2.requests, v2.errors, v2.feedback_count, v2.feedback_mean) == (80, 3, 4, 0.75)
        assert v2.p50_ms == pytest.approx((10.0 * 60 + 20.0 * 20) / 80)  # weighted by the minutes' samples
        v10 = [p for p in series.points if p.model_version == "10"]
        assert len(v10) == 1 and v10[0].error_rate == 0.5 and v10[0].requests_per_min == 10.0

        day = serving_series(s, NOW - timedelta(hours=24), NOW, version="2")
        assert day.step_s == 900 and day.versions == ["2"]
        assert sum(p.requests for p in day.points) == 85
        # The two minutes 30 and 29 minutes ago fall in one 15-minute step: 80 requests over 15 minutes.
        assert max(p.requests_per_min for p in day.points) == pytest.approx(80 / 15, abs=1e-3)


@pytest.mark.parametrize(
    ("since", "until", "version", "field"),
    [
        (NOW, NOW - timedelta(hours=1), None, "since"),
        (NOW - timedelta(days=500), NOW, None, "since"),
        (datetime(2026, 12, 7), NOW, None, "since"),
        (NOW - timedelta(hours=1), NOW, "v 2; drop", "version"),
    ],
)
def test_bad_filters_name_the_field(filled, since, until, version, field):
    with session_scope(filled.database_url) as s, pytest.raises(BadFilter) as exc:
        serving_series(s, since, until, version)
    assert exc.value.field == field


def test_drift_history_per_detector_with_thresholds(filled):
    with session_scope(filled.database_url) as s:
        h = drift_history(s, NOW - timedelta(hours=24), NOW)
        by = {d.detector: d for d in h.detectors}
        mmd = by["embedding_mmd"]
        assert mmd.measure == "p-value" and mmd.fired == 1
        assert [(p.value, p.threshold, p.drift) for p in mmd.points] == [(0.5, 0.01, False), (0.001, 0.01, True)]
        assert by["volume"].measure == "statistic" and by["volume"].points[0].value == 40.0
        only = drift_history(s, NOW - timedelta(hours=24), NOW, "volume")
        assert [d.detector for d in only.detectors] == ["volume"]
        with pytest.raises(BadFilter, match="known: embedding_mmd, volume") as exc:
            drift_history(s, NOW - timedelta(hours=24), NOW, "nope")
        assert exc.value.field == "detector"


def test_page_draws_heatmap_task_lines_serving_and_drift_charts(filled):
    page = build_performance(filled, {"window": "1h"}, now=NOW)
    assert page.status == 200 and page.window == "1h"
    assert len(page.heatmap.cells) == 1 + 2 + 3  # one cell per (version, learned task)
    assert [c.text for c in page.heatmap.cells if c.learned] == ["90.0", "85.0", "60.0"]
    assert [line.name for line in page.task_lines.lines] == ["qa", "sum", "code"]
    assert [p.key for p in page.panels] == ["requests_per_min", "error_rate", "p50_ms", "p95_ms", "feedback_mean"]
    requests = page.panels[0].chart
    assert [line.name for line in requests.lines] == ["v2", "v10"]
    assert len(requests.lines[0].runs) == 1 and len(requests.lines[0].runs[0].split()) == 2  # two joined minutes
    assert page.known_versions == ["1", "2", "10"]
    # The last hour holds the check of an hour ago (its start is inclusive), not the one of two hours ago.
    assert {d.history.detector: len(d.history.points) for d in page.detectors} == {"embedding_mmd": 1, "volume": 1}
    day = build_performance(filled, {"window": "24h"}, now=NOW)
    mmd = next(d for d in day.detectors if d.history.detector == "embedding_mmd")
    assert mmd.chart.threshold and mmd.chart.threshold_label.endswith("0.01")
    assert [d.classes for d in mmd.chart.lines[0].dots] == ["pt pt-ok", "pt pt-drift"]


def test_bad_window_or_version_is_a_422_page_with_defaults(filled):
    page = build_performance(filled, {"window": "2y"}, now=NOW)
    assert page.status == 422 and "window" in page.filter_problem and page.window == "24h"
    assert build_performance(filled, {"version": "<script>"}, now=NOW).status == 422
    only = build_performance(filled, {"version": "10", "window": "1h"}, now=NOW)
    assert only.serving.versions == ["10"] and only.known_versions == ["1", "2", "10"]


def test_a_missing_database_is_store_down(cfg, tmp_path):
    cfg.database.url = f"sqlite:///{tmp_path / 'absent.db'}"
    with pytest.raises(StoreDown) as exc:
        build_performance(cfg, {}, now=NOW)
    assert exc.value.store == "clm's database" and exc.value.since is not None
    assert not (tmp_path / "absent.db").exists()
