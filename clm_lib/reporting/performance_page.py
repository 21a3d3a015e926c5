"""The Performance & drift screen: :mod:`clm_lib.reporting.performance`'s data for a time window and a version,
with its charts laid out (:mod:`clm_lib.reporting.perf_charts`).

A window or version in the address that cannot be applied is a state of the page (``status`` 422, the filter
named, the defaults shown); a database that cannot be read raises :class:`~clm_lib.reporting.stores.StoreDown`
(the screen says which store and since when).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from clm_lib.config import ClmConfig
from clm_lib.drift.policy import VOLUME
from clm_lib.reporting.charts import ALPHA, AT_LEAST, LinearScale, LogPScale, compact, p_label
from clm_lib.reporting.drift import DETECTORS
from clm_lib.reporting.perf_charts import XY, Heatmap, LineChart, heatmap, line_chart
from clm_lib.reporting.performance import (
    BadFilter,
    DetectorHistory,
    DriftHistory,
    ServingSeries,
    TaskMatrix,
    check_version,
    drift_history,
    serving_series,
    task_matrix,
)
from clm_lib.reporting.stores import reading, redact_url

WINDOWS = {"1h": timedelta(hours=1), "24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}
DEFAULT_WINDOW = "24h"


@dataclass(frozen=True)
class Panel:
    """One serving chart: a measure of every version over the window."""

    key: str
    title: str
    unit: str
    chart: LineChart


@dataclass(frozen=True)
class DetectorPanel:
    history: DetectorHistory
    label: str
    chart: LineChart


@dataclass(frozen=True)
class PerformancePage:
    generated_at: datetime
    database_url: str
    window: str
    version: str | None
    filter_problem: str | None
    """A filter of the address that could not be applied (the page shows the defaults instead)."""
    matrix: TaskMatrix
    heatmap: Heatmap | None
    task_lines: LineChart | None
    serving: ServingSeries
    known_versions: list[str]
    """Versions the version filter offers (evaluated or seen serving in the window)."""
    panels: list[Panel]
    drift: DriftHistory
    detectors: list[DetectorPanel]

    @property
    def status(self) -> int:
        return 422 if self.filter_problem else 200


def build_performance(cfg: ClmConfig, args: Mapping[str, str] | None = None, *, now: datetime | None = None):
    """The page for ``args`` (``window``: 1h, 24h, 7d or 30d; ``version``: one model version or all)."""
    args = args or {}
    now = now or datetime.now(UTC)
    window, version, problem = args.get("window") or DEFAULT_WINDOW, args.get("version") or None, None
    try:
        if window not in WINDOWS:
            raise BadFilter("window", f"must be one of {', '.join(WINDOWS)}")
        check_version(version)
    except BadFilter as exc:
        window, version, problem = DEFAULT_WINDOW, None, str(exc)
    since = now - WINDOWS[window]
    with reading(cfg.database_url) as session:
        matrix = task_matrix(session)
        serving = serving_series(session, since, now, version)
        everything = serving if version is None else serving_series(session, since, now)
        drift = drift_history(session, since, now)
    known = sorted({v.model_version for v in matrix.versions} | set(everything.versions))
    return PerformancePage(
        generated_at=now,
        database_url=redact_url(cfg.database_url),
        window=window,
        version=version,
        filter_problem=problem,
        matrix=matrix,
        heatmap=_heatmap(matrix) if matrix.versions else None,
        task_lines=_task_lines(matrix) if matrix.versions else None,
        serving=serving,
        known_versions=sorted(known, key=lambda v: (not v.isdigit(), int(v) if v.isdigit() else 0, v)),
        panels=_panels(serving) if serving.points else [],
        drift=drift,
        detectors=[_detector(h, since, now) for h in drift.detectors],
    )


def _heatmap(m: TaskMatrix) -> Heatmap:
    values = [[v.scores.get(t) for t in m.tasks] for v in m.versions]
    return heatmap([f"v{v.model_version}" for v in m.versions], m.tasks, values, m.learned_at)


def _task_lines(m: TaskMatrix) -> LineChart:
    series = {
        task: [XY(i, v.scores.get(task), f"v{v.model_version} · {task}: {_pct(v.scores.get(task))}")
               for i, v in enumerate(m.versions)]
        for task in m.tasks
    }  # fmt: skip
    n = len(m.versions)
    ticks = [(i, f"v{v.model_version}") for i, v in enumerate(m.versions) if n <= 12 or i % max(1, n // 10) == 0]
    return line_chart(series, (-0.5, n - 0.5), ticks, LinearScale(100.0))


def _pct(value: float | None) -> str:
    return "not learned" if value is None else f"{value:.1f}"


def _time_ticks(since: datetime, until: datetime, most: int = 5) -> list[tuple[float, str]]:
    span = (until - since).total_seconds()
    fmt = "%H:%M" if span <= 86400 else "%m-%d %H:%M" if span <= 3 * 86400 else "%m-%d"
    return [(since.timestamp() + k * span / (most - 1), f"{since + timedelta(seconds=k * span / (most - 1)):{fmt}}")
            for k in range(most)]  # fmt: skip


MEASURES = (
    # key, title, unit, value of a point, fixed top of the y axis
    ("requests_per_min", "Requests", "per minute", lambda p: p.requests_per_min, None),
    ("error_rate", "Error rate", "% of requests", lambda p: None if p.error_rate is None else 100 * p.error_rate, None),
    ("p50_ms", "Latency p50", "ms", lambda p: p.p50_ms, None),
    ("p95_ms", "Latency p95", "ms", lambda p: p.p95_ms, None),
    ("feedback_mean", "Feedback", "mean rating, 0 bad .. 1 good", lambda p: p.feedback_mean, 1.0),
)


def _panels(s: ServingSeries) -> list[Panel]:
    x_range = (s.since.timestamp(), s.until.timestamp())
    ticks = _time_ticks(s.since, s.until)
    panels = []
    for key, title, unit, value, top in MEASURES:
        series: dict[str, list[XY]] = {}
        for p in s.points:
            v = value(p)
            hover = f"v{p.model_version} · {p.at:%Y-%m-%d %H:%M} UTC · {title}: {'—' if v is None else compact(v)}"
            series.setdefault(f"v{p.model_version}", []).append(XY(p.at.timestamp(), v, f"{hover} ({p.requests} req)"))
        values = [xy.value for xs in series.values() for xy in xs]
        scale = LinearScale(top) if top else LinearScale.fitting(values)
        chart = line_chart(series, x_range, ticks, scale, gap=s.step_s * 1.5)
        panels.append(Panel(key, title, unit, chart))
    return panels


def _detector(h: DetectorHistory, since: datetime, until: datetime) -> DetectorPanel:
    label = DETECTORS.get(h.detector, (h.detector, ""))[0]
    points = []
    for p in h.points:
        kind = "pt-drift" if p.drift else "pt-ok" if p.drift is False else "pt-na"
        shown = p_label(p.value) if h.measure == "p-value" and p.value is not None else (
            compact(p.value) if p.value is not None else p.status)  # fmt: skip
        hover = f"{p.at:%Y-%m-%d %H:%M} UTC · {shown} · {'drift' if p.drift else p.status}"
        measured = p.value if p.status not in ("insufficient data", "error") else None
        points.append(XY(p.at.timestamp(), measured, hover, f"pt {kind}", p.threshold))
    values = [p.value for p in h.points] + [p.threshold for p in h.points]
    if h.measure == "p-value":
        scale, text = LogPScale.fitting(values), ALPHA
    else:
        scale, text = LinearScale.fitting(values), AT_LEAST
    unit = "new rows" if h.detector == VOLUME and h.measure == "statistic" else h.measure
    chart = line_chart({unit: points}, (since.timestamp(), until.timestamp()), _time_ticks(since, until), scale,
                       threshold_text=text)  # fmt: skip
    return DetectorPanel(h, label, chart)
