"""The router's sliding-window statistics: counts since a time, p95 within its 5 % buckets, eviction."""

from __future__ import annotations

import pytest

from clm_lib.serving.stats import WindowStats


def test_counts_and_p95_since_a_time():
    stats = WindowStats(window_s=600)
    t = 1_000_000.0
    stats.record(t, 5.0, error=True)  # before the window asked for
    for i in range(100):
        stats.record(t + 1 + i * 0.01, (i + 1) / 1000, error=i % 10 == 0)  # 1..100 ms
    stats.record_rating(t + 2, 1.0)
    stats.record_rating(t + 2, 0.5)
    s = stats.summary(t + 1, t + 3)
    assert (s["requests"], s["errors"]) == (100, 10)
    assert s["p95_ms"] == pytest.approx(95, rel=0.05)
    assert (s["feedback_count"], s["feedback_mean"]) == (2, 0.75)
    assert stats.summary(t, t + 3)["requests"] == 101


def test_empty_window_and_eviction():
    stats = WindowStats(window_s=60)
    assert stats.summary(0, 10) | {"since": 0, "until": 0} == {
        "since": 0, "until": 0, "requests": 0, "errors": 0, "p95_ms": None, "feedback_count": 0, "feedback_mean": None,
    }  # fmt: skip
    stats.record(1000.0, 0.01, error=False)
    stats.record(1100.0, 0.01, error=False)  # more than 60 s later: the first is forgotten
    assert stats.summary(0, 2000)["requests"] == 1
