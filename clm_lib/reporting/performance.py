"""Performance & drift, as data: per-task accuracy across versions, live serving numbers over time per version,
and each drift detector's value against its threshold over time.

The Performance screen (:mod:`clm_lib.reporting.performance_page` draws it) and ``/clm/api/v1/performance/*``
call these same functions. Everything is read from clm's database: ``evaluations`` (one row of the accuracy matrix
R per update), ``serving_metrics`` (the router's minute buckets, :mod:`clm_lib.serving.metrics_store`) and
``drift_reports``. Every read is bounded; a filter that cannot be applied raises :class:`BadFilter` naming it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import ConfigDict
from sqlalchemy import select
from sqlalchemy.orm import Session

from clm_lib.db.models import DriftReport, Evaluation, ServingMetric
from clm_lib.reporting.params import BadFilter
from clm_lib.reporting.stores import utc

__all__ = ["BadFilter", "drift_history", "serving_series", "task_matrix"]

_DOCS = ConfigDict(use_attribute_docstrings=True)
"""Lets the REST API's OpenAPI document carry the fields' docstrings (these dataclasses are its response models)."""
MAX_VERSIONS = 200
MAX_SPAN = timedelta(days=400)
"""Longest window a query may cover (longer than any sensible ``serving.metrics_retention_days``)."""
MAX_ROWS = 250_000
"""Minute rows read for one series (30 days of 2 slots x 2 versions is 173k); more are left out and said so."""
MAX_DRIFT_POINTS = 5000
STEPS = (60, 300, 900, 1800, 3600, 7200, 21600, 43200, 86400, 604800)
"""Widths a series' points may have: the first that keeps a window at or under :data:`MAX_POINTS` points."""
MAX_POINTS = 120
_VERSION = re.compile(r"^[A-Za-z0-9._-]{1,32}$")
_DETECTOR = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def version_key(version: str) -> tuple[int, int | str]:
    """Numeric versions in numeric order, anything else after them."""
    return (0, int(version)) if version.isdigit() else (1, version)


# --- per-task accuracy across versions ---------------------------------------------------------------------


@dataclass(frozen=True)
class VersionScores:
    __pydantic_config__ = _DOCS

    model_version: str
    training_run_id: str
    evaluated_at: datetime | None
    scores: dict[str, float | None]
    """Task -> accuracy (0-100) on its held-out set; None: the version had not learned the task."""
    average_accuracy: float
    """Mean accuracy over the tasks it had learned (AA)."""
    backward_transfer: float | None
    """BWT along its lineage: negative is forgetting; None before a second task."""


@dataclass(frozen=True)
class TaskMatrix:
    """Per-task accuracy of each evaluated version, oldest version first: the accuracy matrix R across versions."""

    __pydantic_config__ = _DOCS

    tasks: list[str]
    """Columns: tasks in the order they were first learned."""
    versions: list[VersionScores]
    learned_at: dict[str, int]
    """Task -> index in ``versions`` of the first version that learned it."""


def task_matrix(session: Session, *, max_versions: int = 30) -> TaskMatrix:
    """The newest evaluation of each of the newest ``max_versions`` registered versions."""
    if not 1 <= max_versions <= MAX_VERSIONS:
        raise BadFilter("max_versions", f"must be between 1 and {MAX_VERSIONS}")
    newest: dict[str, Evaluation] = {}
    stmt = select(Evaluation).where(Evaluation.model_version.is_not(None)).order_by(Evaluation.id)
    for ev in session.scalars(stmt):  # the last evaluation of a version wins
        newest[str(ev.model_version)] = ev
    chosen = sorted(newest, key=version_key)[-max_versions:]
    tasks: list[str] = []
    versions: list[VersionScores] = []
    learned_at: dict[str, int] = {}
    for i, version in enumerate(chosen):
        ev = newest[version]
        learned = [str(t) for t in ev.tasks or []]
        for task in learned:
            if task not in learned_at:
                learned_at[task] = i
                tasks.append(task)
        scores = {t: _number(ev.scores.get(t)) for t in learned}
        versions.append(VersionScores(version, ev.training_run_id, utc(ev.created_at), scores,
                                      float(ev.average_accuracy), _number(ev.backward_transfer)))  # fmt: skip
    for v in versions:  # every row names every column; None where that version had not learned the task
        for task in tasks:
            v.scores.setdefault(task, None)
    return TaskMatrix(tasks=tasks, versions=versions, learned_at=learned_at)


def _number(value) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


# --- serving over time ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServingPoint:
    """One version's traffic over one step of the series (all slots serving it together)."""

    __pydantic_config__ = _DOCS

    at: datetime
    """Start of the step."""
    model_version: str
    requests: int
    errors: int
    requests_per_min: float
    error_rate: float | None
    """errors / requests; None without requests."""
    p50_ms: float | None
    """Median latency: the minutes' p50s weighted by their samples (an approximation past one minute)."""
    p95_ms: float | None
    """95th percentile latency, weighted like ``p50_ms``."""
    feedback_count: int
    feedback_mean: float | None
    """Mean rating (0 bad .. 1 good) of the answers rated in the step."""


@dataclass(frozen=True)
class VersionTotals:
    """One version over the whole window."""

    __pydantic_config__ = _DOCS

    model_version: str
    requests: int
    errors: int
    error_rate: float | None
    p50_ms: float | None
    p95_ms: float | None
    feedback_count: int
    feedback_mean: float | None
    first_at: datetime
    last_at: datetime
    """Start of the last minute with traffic or feedback."""


@dataclass(frozen=True)
class ServingSeries:
    """Live serving numbers per version over ``[since, until)``, in steps of ``step_s`` seconds."""

    __pydantic_config__ = _DOCS

    since: datetime
    until: datetime
    step_s: int
    versions: list[str]
    """Versions with traffic or feedback in the window, in version order."""
    points: list[ServingPoint]
    """Steps with traffic or feedback, by version then time."""
    totals: list[VersionTotals]
    truncated: bool
    """More minute rows than clm reads at once: the newest are left out."""


def check_window(since: datetime, until: datetime) -> None:
    if since.tzinfo is None or until.tzinfo is None:
        raise BadFilter("since" if since.tzinfo is None else "until", "give a time zone (e.g. Z or +00:00)")
    if since >= until:
        raise BadFilter("since", "must be before until")
    if until - since > MAX_SPAN:
        raise BadFilter("since", f"the window may cover at most {MAX_SPAN.days} days")


def step_for(since: datetime, until: datetime) -> int:
    span = (until - since).total_seconds()
    return next((s for s in STEPS if span / s <= MAX_POINTS), STEPS[-1])


def check_version(version: str | None) -> None:
    if version is not None and not _VERSION.match(version):
        raise BadFilter("version", "a model version is 1-32 letters, digits, dots, dashes or underscores")


def serving_series(session: Session, since: datetime, until: datetime, version: str | None = None) -> ServingSeries:
    check_window(since, until)
    check_version(version)
    step = step_for(since, until)
    m = ServingMetric
    stmt = select(m.bucket_start, m.model_version, m.requests, m.errors, m.latency_p50_ms, m.latency_p95_ms,
                  m.latency_samples, m.feedback_count, m.feedback_sum).where(
        m.bucket_start >= since, m.bucket_start < until)  # fmt: skip
    if version is not None:
        stmt = stmt.where(m.model_version == version)
    found = session.execute(stmt.order_by(m.bucket_start).limit(MAX_ROWS + 1)).all()
    truncated = len(found) > MAX_ROWS
    origin = since.timestamp()
    acc: dict[tuple[str, int], _Acc] = {}
    whole: dict[str, _Acc] = {}
    for at, ver, requests, errors, p50, p95, samples, fb_count, fb_sum in found[:MAX_ROWS]:
        at = utc(at)
        index = int((at.timestamp() - origin) // step)
        for a in (acc.setdefault((ver, index), _Acc()), whole.setdefault(ver, _Acc())):
            a.add(at, requests, errors, p50, p95, samples, fb_count, fb_sum)
    versions = sorted(whole, key=version_key)
    points = [
        a.point(since + timedelta(seconds=index * step), ver, step)
        for (ver, index), a in sorted(acc.items(), key=lambda kv: (version_key(kv[0][0]), kv[0][1]))
    ]
    totals = [whole[v].totals(v) for v in versions]
    return ServingSeries(since, until, step, versions, points, totals, truncated)


class _Acc:
    __slots__ = ("errors", "fb_count", "fb_sum", "first", "last", "p50", "p95", "requests", "samples")

    def __init__(self):
        self.requests = self.errors = self.samples = self.fb_count = 0
        self.p50 = self.p95 = self.fb_sum = 0.0
        self.first = self.last = None

    def add(self, at, requests, errors, p50, p95, samples, fb_count, fb_sum) -> None:
        self.requests += requests
        self.errors += errors
        if samples and p50 is not None and p95 is not None:
            self.p50 += p50 * samples
            self.p95 += p95 * samples
            self.samples += samples
        self.fb_count += fb_count
        self.fb_sum += fb_sum
        self.first = at if self.first is None else min(self.first, at)
        self.last = at if self.last is None else max(self.last, at)

    def _latency(self) -> tuple[float | None, float | None]:
        if not self.samples:
            return None, None
        return round(self.p50 / self.samples, 3), round(self.p95 / self.samples, 3)

    def _rates(self) -> tuple[float | None, float | None]:
        error_rate = self.errors / self.requests if self.requests else None
        return error_rate, (self.fb_sum / self.fb_count if self.fb_count else None)

    def point(self, at: datetime, version: str, step: int) -> ServingPoint:
        (p50, p95), (error_rate, feedback) = self._latency(), self._rates()
        return ServingPoint(at, version, self.requests, self.errors, round(self.requests / (step / 60), 3),
                            error_rate, p50, p95, self.fb_count, feedback)  # fmt: skip

    def totals(self, version: str) -> VersionTotals:
        (p50, p95), (error_rate, feedback) = self._latency(), self._rates()
        return VersionTotals(version, self.requests, self.errors, error_rate, p50, p95, self.fb_count, feedback,
                             self.first, self.last)  # fmt: skip


# --- drift over time ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DriftPoint:
    """One detector's verdict in one check."""

    __pydantic_config__ = _DOCS

    at: datetime
    check_id: str
    """The check on the Drift screen (``/drift``) and in ``drift_reports``."""
    status: str
    """ok, insufficient data, degraded: using fallback, or error."""
    drift: bool | None
    """None: the detector could not judge."""
    value: float | None
    """What is compared to ``threshold``: the p-value, or the statistic of a detector without one."""
    threshold: float | None
    triggered: bool
    """This verdict was one of the reasons for a retraining request."""


@dataclass(frozen=True)
class DetectorHistory:
    __pydantic_config__ = _DOCS

    detector: str
    measure: str
    """``p-value`` (drift when below the threshold) or ``statistic`` (drift when at or above it)."""
    points: list[DriftPoint]
    """Oldest first."""
    fired: int


@dataclass(frozen=True)
class DriftHistory:
    """Each detector's verdicts over ``[since, until)``."""

    __pydantic_config__ = _DOCS

    since: datetime
    until: datetime
    detectors: list[DetectorHistory]
    truncated: bool
    """More verdicts than clm reads at once: the oldest are left out."""


def configured_detectors(cfg) -> list[str]:
    """The detectors clm's config runs (the volume trigger included)."""
    from clm_lib.drift.policy import VOLUME

    names = [n for n, s in cfg.drift.detector_settings().items() if s.enabled]
    return names + ([VOLUME] if cfg.drift.volume.enabled else [])


def known_detectors(session: Session, configured: list[str]) -> list[str]:
    """The configured detectors, then any other that has a stored verdict."""
    stored = session.scalars(select(DriftReport.detector).distinct()).all()
    return list(dict.fromkeys([*configured, *sorted(stored)]))


def drift_history(
    session: Session, since: datetime, until: datetime, detector: str | None = None, *, known: list[str] | None = None
) -> DriftHistory:
    """Verdicts per detector; ``detector`` must be one of ``known`` (the configured and stored detectors) when
    given."""
    check_window(since, until)
    if detector is not None:
        names = known if known is not None else known_detectors(session, [])
        if not _DETECTOR.match(detector) or detector not in names:
            raise BadFilter("detector", f"unknown detector; known: {', '.join(names)[:400] or 'none yet'}")
    d = DriftReport
    stmt = select(d.created_at, d.check_id, d.detector, d.status, d.drift, d.statistic, d.p_value, d.threshold,
                  d.triggered).where(d.created_at >= since, d.created_at < until)  # fmt: skip
    if detector is not None:
        stmt = stmt.where(d.detector == detector)
    found = session.execute(stmt.order_by(d.created_at.desc(), d.id.desc()).limit(MAX_DRIFT_POINTS + 1)).all()
    truncated = len(found) > MAX_DRIFT_POINTS
    by_detector: dict[str, list] = {}
    for row in reversed(found[:MAX_DRIFT_POINTS]):
        by_detector.setdefault(row.detector, []).append(row)
    histories = []
    for name, rows in by_detector.items():
        p_values = any(r.p_value is not None for r in rows)
        points = [
            DriftPoint(utc(r.created_at), r.check_id, r.status, r.drift, r.p_value if p_values else r.statistic,
                       r.threshold, bool(r.triggered))
            for r in rows
        ]  # fmt: skip
        measure = "p-value" if p_values else "statistic"
        histories.append(DetectorHistory(name, measure, points, sum(bool(r.drift) for r in rows)))
    return DriftHistory(since, until, histories, truncated)
