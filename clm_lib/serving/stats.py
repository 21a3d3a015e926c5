"""Per-slot traffic statistics over a sliding window, in 0.1 s steps: what the bake window judges.

Prometheus counters are cumulative, and without a Prometheus server nothing could say what happened *since*
a canary step began; so the router also keeps, per slot and per tenth of a second, the request and error counts,
the feedback ratings and a log-bucketed latency histogram (5 % wide buckets, so p95 is within 5 %), for
``serving.stats_window_s`` seconds. A window starts on a step boundary, so it may include up to 0.1 s of traffic
from before ``since``. Memory stays bounded: a step holds at most one counter per latency bucket used, and steps
without traffic are not stored.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from dataclasses import dataclass, field

_FLOOR_MS = 0.05
_RATIO = 1.05
_LOG_RATIO = math.log(_RATIO)
STEP_S = 0.1


def _bucket(ms: float) -> int:
    return max(0, math.ceil(math.log(max(ms, _FLOOR_MS) / _FLOOR_MS) / _LOG_RATIO))


def _upper_ms(bucket: int) -> float:
    return _FLOOR_MS * _RATIO**bucket


@dataclass(slots=True)
class _Step:
    step: int
    requests: int = 0
    errors: int = 0
    latency: Counter = field(default_factory=Counter)
    ratings: int = 0
    rating_sum: float = 0.0


class WindowStats:
    """Requests, errors, latencies and ratings of one slot, per 0.1 s step, for the last ``window_s`` seconds."""

    def __init__(self, window_s: int):
        self.window_steps = int(window_s / STEP_S)
        self._steps: deque[_Step] = deque()

    def _at(self, now: float) -> _Step:
        step = int(now / STEP_S)
        if not self._steps or self._steps[-1].step != step:
            self._steps.append(_Step(step))
            while self._steps[0].step < step - self.window_steps:
                self._steps.popleft()
        return self._steps[-1]

    def record(self, now: float, latency_s: float, error: bool) -> None:
        s = self._at(now)
        s.requests += 1
        s.errors += error
        s.latency[_bucket(latency_s * 1000.0)] += 1

    def record_rating(self, now: float, rating: float) -> None:
        s = self._at(now)
        s.ratings += 1
        s.rating_sum += rating

    def summary(self, since: float, until: float) -> dict:
        """Totals over the steps that overlap [since, until]."""
        requests = errors = ratings = 0
        rating_sum = 0.0
        latency: Counter = Counter()
        first, last = int(since / STEP_S), int(until / STEP_S)
        for s in self._steps:
            if not first <= s.step <= last:
                continue
            requests += s.requests
            errors += s.errors
            ratings += s.ratings
            rating_sum += s.rating_sum
            latency.update(s.latency)
        return {
            "since": since,
            "until": until,
            "requests": requests,
            "errors": errors,
            "p95_ms": _quantile(latency, 0.95),
            "feedback_count": ratings,
            "feedback_mean": rating_sum / ratings if ratings else None,
        }


def _quantile(hist: Counter, q: float) -> float | None:
    total = sum(hist.values())
    if not total:
        return None
    rank, seen = math.ceil(q * total), 0
    for bucket in sorted(hist):
        seen += hist[bucket]
        if seen >= rank:
            return round(_upper_ms(bucket), 3)
    return None  # pragma: no cover - the loop always reaches rank
