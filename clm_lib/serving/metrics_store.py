"""Live serving metrics kept over time: the router's per-minute numbers per model version and slot, written to
``serving_metrics`` in clm's database.

Prometheus keeps what it scrapes for its own retention (15 days by default) and only where one runs; the
Performance screen compares versions over weeks. So the router aggregates, per (minute, version, slot), the
requests, errors, a bounded random sample of latencies (p50/p95 by numpy over the sample: exact below
:data:`SAMPLE_SIZE` requests a minute) and the feedback ratings, and a background task writes every minute that
has ended each ``serving.metrics_flush_seconds``.

Recording is a dict update on the event loop; the write runs in a worker thread, so a slow or dead database never
delays a request. A failed write keeps its buckets and retries them on the next flush; at most
``serving.metrics_max_pending`` finished buckets wait, the oldest beyond that are dropped and counted
(``clm_router_metrics_buckets_dropped``). Writes are idempotent per bucket: a bucket written twice (a commit whose
answer was lost, or a router restarted within the minute) merges into one row, counts added.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
from sqlalchemy import delete, select
from sqlalchemy.exc import SQLAlchemyError

from clm_lib.db import session_scope
from clm_lib.db.models import ServingMetric
from clm_lib.reporting.stores import first_line, missing_sqlite

log = logging.getLogger(__name__)

BUCKET_S = 60
SAMPLE_SIZE = 1024
"""Latencies kept per bucket (reservoir sampling): percentiles of a uniform sample of the minute's requests."""
UNKNOWN_VERSION = "unknown"
PRUNE_EVERY_S = 3600.0

Key = tuple[int, str, str]
"""(minute start as unix seconds, model version, slot)."""


def percentiles(latencies_ms: list[float]) -> tuple[float | None, float | None]:
    """p50 and p95 of ``latencies_ms`` (numpy's linear interpolation), None for no data."""
    if not latencies_ms:
        return None, None
    p50, p95 = np.percentile(np.asarray(latencies_ms, dtype=float), [50, 95])
    return round(float(p50), 3), round(float(p95), 3)


@dataclass(slots=True)
class Bucket:
    requests: int = 0
    errors: int = 0
    sample: list[float] = field(default_factory=list)
    seen: int = 0
    """Latencies offered to the sample (``requests`` may include failures without a meaningful latency)."""
    feedback_count: int = 0
    feedback_sum: float = 0.0

    def add_latency(self, ms: float, rng: random.Random) -> None:
        self.seen += 1
        if len(self.sample) < SAMPLE_SIZE:
            self.sample.append(ms)
        else:
            j = rng.randrange(self.seen)
            if j < SAMPLE_SIZE:
                self.sample[j] = ms


class MetricsStore:
    """Per-minute buckets in memory, flushed to clm's database. ``record*`` are called on the event loop; ``flush``
    may run in another thread (a lock guards the buckets)."""

    def __init__(
        self,
        database_url: str,
        *,
        flush_seconds: float = 60.0,
        retention_days: int = 90,
        max_pending: int = 10080,
        on_drop: Callable[[int], None] | None = None,
        clock: Callable[[], float] | None = None,
    ):
        self.database_url = database_url
        self.flush_seconds = flush_seconds
        self.retention = timedelta(days=retention_days)
        self.max_pending = max_pending
        self.on_drop = on_drop or (lambda n: None)
        self.clock = clock or time.time
        self._open: dict[Key, Bucket] = {}
        self._pending: OrderedDict[Key, Bucket] = OrderedDict()
        self._lock = threading.Lock()
        self._rng = random.Random()
        self._last_prune = 0.0
        self.dropped = 0
        self.last_error: str | None = None
        self.failing_since: datetime | None = None

    # --- recording (event loop) ------------------------------------------------------------------------
    def _bucket(self, now: float, version: str | None, slot: str) -> Bucket:
        # The version comes from a slot's /healthz or a feedback answer: keep whatever it is within the column.
        key = (int(now // BUCKET_S) * BUCKET_S, str(version)[:32] if version else UNKNOWN_VERSION, slot[:16])
        bucket = self._open.get(key)
        if bucket is None:
            bucket = self._open[key] = Bucket()
        return bucket

    def record(self, slot: str, version: str | None, latency_s: float, error: bool, now: float | None = None) -> None:
        with self._lock:
            b = self._bucket(self.clock() if now is None else now, version, slot)
            b.requests += 1
            b.errors += error
            b.add_latency(latency_s * 1000.0, self._rng)

    def record_rating(self, slot: str, version: str | None, rating: float, now: float | None = None) -> None:
        with self._lock:
            b = self._bucket(self.clock() if now is None else now, version, slot)
            b.feedback_count += 1
            b.feedback_sum += rating

    @property
    def pending(self) -> int:
        """Finished buckets not yet written."""
        return len(self._pending)

    def _close_finished(self, now: float, *, everything: bool = False) -> None:
        current = int(now // BUCKET_S) * BUCKET_S
        for key in [k for k in self._open if everything or k[0] < current]:
            bucket = self._open.pop(key)
            if key in self._pending:  # put back after a failed write while the same minute went on elsewhere
                _merge_into(self._pending[key], bucket)
            else:
                self._pending[key] = bucket
        dropped = 0
        while len(self._pending) > self.max_pending:
            self._pending.popitem(last=False)
            dropped += 1
        if dropped:
            self.dropped += dropped
            self.on_drop(dropped)
            log.warning("serving metrics: dropped %d minute bucket(s) that clm's database could not take", dropped)

    # --- flushing (worker thread) ----------------------------------------------------------------------
    def flush(self, *, everything: bool = False) -> int:
        """Write every finished bucket (``everything``: the current minute's too, at shutdown); prune old rows once
        an hour. Returns the buckets written; never raises for a database that cannot be written."""
        now = self.clock()
        with self._lock:
            self._close_finished(now, everything=everything)
            batch = list(self._pending.items())
        if not batch and now - self._last_prune < PRUNE_EVERY_S:
            return 0
        try:
            missing = missing_sqlite(self.database_url)
            if missing:
                raise FileNotFoundError(f"there is no database at {missing} yet; `clm init` creates it")
            with session_scope(self.database_url) as session:
                for key, bucket in batch:
                    _upsert(session, key, bucket)
                if now - self._last_prune >= PRUNE_EVERY_S:
                    self._prune(session, now)
        except (SQLAlchemyError, OSError) as exc:
            self.last_error = first_line(exc)
            if self.failing_since is None:
                self.failing_since = datetime.now(UTC)
                log.warning("serving metrics: cannot write to clm's database (%s); keeping %d bucket(s) to retry",
                            self.last_error, len(batch))  # fmt: skip
            return 0
        with self._lock:
            for key, _ in batch:
                self._pending.pop(key, None)
        if self.failing_since is not None:
            log.info("serving metrics: clm's database writable again; wrote %d bucket(s)", len(batch))
        self.failing_since, self.last_error = None, None
        return len(batch)

    def _prune(self, session, now: float) -> int:
        cutoff = datetime.fromtimestamp(now, UTC) - self.retention
        result = session.execute(delete(ServingMetric).where(ServingMetric.bucket_start < cutoff))
        self._last_prune = now
        return result.rowcount or 0

    def prune(self) -> int:
        """Delete rows older than the retention now; returns how many."""
        with session_scope(self.database_url) as session:
            return self._prune(session, self.clock())

    # --- the background task -----------------------------------------------------------------------------
    async def run(self) -> None:
        """Flush every ``flush_seconds`` until cancelled, then once more with the current minute included."""
        try:
            while True:
                await asyncio.sleep(self.flush_seconds)
                try:
                    await asyncio.to_thread(self.flush)
                except Exception:  # the loop must outlive any surprise, or metrics would silently stop
                    log.exception("serving metrics flush failed")
        except asyncio.CancelledError:
            await asyncio.to_thread(self.flush, everything=True)
            raise


def _merge_into(into: Bucket, other: Bucket) -> None:
    into.requests += other.requests
    into.errors += other.errors
    into.feedback_count += other.feedback_count
    into.feedback_sum += other.feedback_sum
    into.seen += other.seen
    into.sample = (into.sample + other.sample)[-SAMPLE_SIZE:]


def _upsert(session, key: Key, bucket: Bucket) -> None:
    start, version, slot = key
    at = datetime.fromtimestamp(start, UTC)
    p50, p95 = percentiles(bucket.sample)
    row = session.scalars(
        select(ServingMetric).where(
            ServingMetric.bucket_start == at, ServingMetric.model_version == version, ServingMetric.slot == slot
        )
    ).first()
    if row is None:
        session.add(
            ServingMetric(bucket_start=at, model_version=version, slot=slot, requests=bucket.requests,
                          errors=bucket.errors, latency_p50_ms=p50, latency_p95_ms=p95,
                          latency_samples=len(bucket.sample), feedback_count=bucket.feedback_count,
                          feedback_sum=bucket.feedback_sum, written_at=datetime.now(UTC))
        )  # fmt: skip
        return
    # A second write of the same minute: counts add; the percentiles become the sample-weighted mean of the two,
    # the best that can be done without the first writer's latencies.
    n_old, n_new = row.latency_samples, len(bucket.sample)
    if n_new:
        row.latency_p50_ms = _weighted(row.latency_p50_ms, n_old, p50, n_new)
        row.latency_p95_ms = _weighted(row.latency_p95_ms, n_old, p95, n_new)
    row.requests += bucket.requests
    row.errors += bucket.errors
    row.latency_samples = n_old + n_new
    row.feedback_count += bucket.feedback_count
    row.feedback_sum += bucket.feedback_sum
    row.written_at = datetime.now(UTC)


def _weighted(old: float | None, n_old: int, new: float | None, n_new: int) -> float | None:
    if old is None or not n_old:
        return new
    if new is None:
        return old
    return round((old * n_old + new * n_new) / (n_old + n_new), 3)
