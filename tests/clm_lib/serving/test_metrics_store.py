"""Serving metrics kept over time: minute buckets written to a real clm database by the store and by a real
router in front of stand-in slots; a database that is down delays the write, never a request."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import httpx
import numpy as np
import pytest
from sqlalchemy import select

from clm_lib.db import session_scope, upgrade
from clm_lib.db.models import ServingMetric
from clm_lib.serving.metrics_store import BUCKET_S, SAMPLE_SIZE, MetricsStore, percentiles
from clm_lib.serving.router import Router

from .helpers import running
from .test_router import TOKEN, stand_in

T0 = 1_800_000_000.0  # a minute boundary (divisible by 60)


class Clock:
    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


def rows(url: str) -> list[ServingMetric]:
    with session_scope(url) as s:
        return list(s.scalars(select(ServingMetric).order_by(ServingMetric.bucket_start, ServingMetric.slot)))


def test_percentiles_match_numpy_on_known_data():
    data = [float(x) for x in range(1, 101)]
    assert percentiles(data) == (50.5, 95.05)
    rng = np.random.default_rng(7)
    skewed = list(rng.lognormal(3, 1, 500))
    p50, p95 = percentiles(skewed)
    assert p50 == pytest.approx(np.percentile(skewed, 50), abs=1e-3)
    assert p95 == pytest.approx(np.percentile(skewed, 95), abs=1e-3)
    assert percentiles([]) == (None, None)


def test_finished_minutes_are_written_and_the_current_one_waits(sqlite_url):
    clock = Clock(T0 + 5)
    store = MetricsStore(sqlite_url, clock=clock)
    for ms in range(1, 101):
        store.record("blue", "3", ms / 1000.0, error=ms > 96)
    store.record("green", "4", 0.5, error=False)
    store.record_rating("blue", "3", 1.0)
    store.record_rating("blue", "3", 0.5)
    assert store.flush() == 0 and rows(sqlite_url) == []  # the minute is still going on

    clock.now = T0 + BUCKET_S + 1
    store.record("blue", "3", 0.010, error=False)  # the next minute: stays open
    assert store.flush() == 2
    blue, green = rows(sqlite_url)
    assert blue.bucket_start.replace(tzinfo=UTC) == datetime.fromtimestamp(T0, UTC)
    assert (blue.model_version, blue.requests, blue.errors, blue.latency_samples) == ("3", 100, 4, 100)
    assert blue.latency_p50_ms == pytest.approx(50.5) and blue.latency_p95_ms == pytest.approx(95.05)
    assert (blue.feedback_count, blue.feedback_sum) == (2, 1.5)
    assert (green.model_version, green.requests, green.latency_p50_ms) == ("4", 1, 500.0)
    assert store.pending == 0


def test_the_sample_is_bounded():
    store = MetricsStore("sqlite:///unused.db", clock=Clock(T0))
    for i in range(SAMPLE_SIZE * 3):
        store.record("blue", "1", i / 1000.0, error=False)
    (bucket,) = store._open.values()
    assert bucket.requests == SAMPLE_SIZE * 3 and len(bucket.sample) == SAMPLE_SIZE
    # A uniform sample of 0..3071 ms: its median lands near the true one (1535.5), far from the first 1024's.
    assert 1300 < np.percentile(bucket.sample, 50) < 1800


def test_database_down_keeps_buckets_and_writes_them_later(tmp_path):
    url = f"sqlite:///{tmp_path / 'later.db'}"
    clock = Clock(T0 + 1)
    store = MetricsStore(url, clock=clock)
    store.record("blue", "2", 0.02, error=False)
    clock.now = T0 + BUCKET_S + 1
    assert store.flush() == 0  # no database file: nothing is created, the bucket waits
    assert store.pending == 1 and store.failing_since is not None and "no database" in store.last_error
    assert not (tmp_path / "later.db").exists()

    upgrade(url)
    assert store.flush() == 1
    assert [(r.requests, r.model_version) for r in rows(url)] == [(1, "2")]
    assert store.pending == 0 and store.failing_since is None


def test_pending_buckets_are_bounded_and_drops_counted(tmp_path):
    dropped: list[int] = []
    clock = Clock(T0)
    store = MetricsStore(f"sqlite:///{tmp_path / 'none.db'}", max_pending=10, on_drop=dropped.append, clock=clock)
    for minute in range(15):
        clock.now = T0 + minute * BUCKET_S
        store.record("blue", "1", 0.01, error=False)
    clock.now += BUCKET_S
    store.flush()
    assert store.pending == 10 and store.dropped == 5 and sum(dropped) == 5
    assert min(k[0] for k in store._pending) == T0 + 5 * BUCKET_S  # the oldest went first


def test_a_bucket_written_twice_merges(sqlite_url):
    clock = Clock(T0 + 1)
    first, second = MetricsStore(sqlite_url, clock=clock), MetricsStore(sqlite_url, clock=clock)
    for _ in range(3):
        first.record("blue", "1", 0.010, error=False)
    second.record("blue", "1", 0.050, error=True)
    clock.now += BUCKET_S
    first.flush(), second.flush()
    (row,) = rows(sqlite_url)
    assert (row.requests, row.errors, row.latency_samples) == (4, 1, 4)
    assert row.latency_p50_ms == pytest.approx((10 * 3 + 50) / 4)


def test_retention_prunes_old_rows(sqlite_url):
    clock = Clock(T0 + 1)
    store = MetricsStore(sqlite_url, retention_days=1, clock=clock)
    store.record("blue", "1", 0.01, error=False)
    clock.now += BUCKET_S
    assert store.flush() == 1
    clock.now = T0 + timedelta(days=1).total_seconds() - 60
    assert store.prune() == 0 and len(rows(sqlite_url)) == 1
    clock.now = T0 + timedelta(days=1, minutes=2).total_seconds()
    assert store.prune() == 1 and rows(sqlite_url) == []


def test_real_traffic_through_a_router_lands_in_serving_metrics(tmp_path):
    """A router with its store, in front of two stand-in slots: requests are served while the database does not
    exist yet, and the minute lands in ``serving_metrics`` with the slots' versions once it does."""
    url = f"sqlite:///{tmp_path / 'clm.db'}"
    store = MetricsStore(url, flush_seconds=0.2)
    with running(stand_in("blue", 0.01)) as blue, running(stand_in("green", 0.01)) as green:
        router = Router({"blue": blue, "green": green}, {"blue": 50, "green": 50}, token=TOKEN, timeout_s=10,
                        health_interval_s=0.1, window_s=600, metrics_store=store)  # fmt: skip
        with running(router) as router_url, httpx.Client() as c:
            answers = [c.post(f"{router_url}/v1/completions", json={}).status_code for _ in range(20)]
            rating = c.post(f"{router_url}/v1/feedback", json={"response_id": "cmpl-green-1", "rating": 0.75})
            assert answers == [200] * 20 and rating.status_code == 200
            deadline = time.monotonic() + 15
            while store.failing_since is None and time.monotonic() < deadline:  # a flush ran and found no database
                time.sleep(0.05)
            assert store.failing_since is not None
            assert c.post(f"{router_url}/v1/completions", json={}).status_code == 200
            assert "clm_router_metrics_buckets_dropped_total 0.0" in c.get(f"{router_url}/metrics").text
            upgrade(url)
        # Shutdown flushes the minute under way too.
    written = rows(url)  # one minute per slot, or two where the requests straddled a minute boundary
    assert sum(r.requests for r in written) == 21
    by_slot: dict[str, set[str]] = {}
    for r in written:
        by_slot.setdefault(r.slot, set()).add(r.model_version)
    assert by_slot == {"blue": {"blue"}, "green": {"green"}}
    assert sum(r.feedback_count for r in written if r.slot == "green") == 1
    assert all(r.errors == 0 and r.latency_p95_ms >= 10.0 for r in written if r.requests)
