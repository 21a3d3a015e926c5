"""Ingestion volume hour by hour: batches, rows and the bytes written to ``raw``, and the bar charts of them.

Rows come from the batches clm's database records (by the hour each finished); bytes from the Delta log of ``raw``
(each appended file's size, by the hour it was written), so no data file is read.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from clm_lib.reporting.charts import LinearScale, Tick, compact
from clm_lib.reporting.schema import DOCUMENTED

COUNTS = ("rows_in", "rows_curated", "rows_quarantined", "rows_duplicate")


@dataclass(frozen=True)
class Hour:
    """One hour of ingestion: batches that finished in it, their rows, and the bytes written to ``raw``."""

    __pydantic_config__ = DOCUMENTED

    start: datetime
    """The hour's first instant (UTC)."""
    batches: int = 0
    rows_in: int = 0
    rows_curated: int = 0
    rows_quarantined: int = 0
    rows_duplicate: int = 0
    raw_bytes: int = 0
    """Parquet bytes (compressed) the hour's appends added to ``raw``, from the Delta log."""


class _Finished(Protocol):
    status: str
    finished_at: datetime | None
    rows_in: int
    rows_curated: int
    rows_quarantined: int
    rows_duplicate: int


def hour_of(value: datetime) -> datetime:
    """The start of the UTC hour ``value`` falls in."""
    return value.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def hourly(
    batches: Iterable[_Finished], raw_bytes: Mapping[datetime, int], first_hour: datetime, hours: int
) -> list[Hour]:
    """``hours`` hours from ``first_hour``: the committed batches that finished in each, their rows, and
    ``raw_bytes`` (bytes written to ``raw`` per hour start)."""
    by_hour: dict[datetime, dict[str, int]] = defaultdict(Counter)
    for b in batches:
        if b.finished_at is not None and b.finished_at >= first_hour and b.status == "committed":
            h = by_hour[hour_of(b.finished_at)]
            h["batches"] += 1
            for name in COUNTS:
                h[name] += getattr(b, name)
    for start, size in raw_bytes.items():
        by_hour[start]["raw_bytes"] += size
    return [Hour(first_hour + timedelta(hours=i), **by_hour.get(first_hour + timedelta(hours=i), {}))
            for i in range(hours)]  # fmt: skip


@dataclass(frozen=True)
class Bar:
    x: float
    width: float
    segments: list[tuple[float, float, str]]
    """(y, height, CSS class) from the bottom up."""
    title: str


@dataclass(frozen=True)
class BarChart:
    width: int
    height: int
    left: float
    right: float
    bottom: float
    y_ticks: list[Tick]
    x_ticks: list[Tick]
    bars: list[Bar]


def hourly_chart(hours: list[Hour], measure: str) -> BarChart | None:
    """Bars per hour: ``rows`` stacked curated / quarantined / duplicate, or ``bytes`` written to raw. None when
    there is nothing to draw."""
    width, height, left, right_margin, top, bottom_margin = 960, 140, 50, 20, 10, 22
    right, bottom = width - right_margin, height - bottom_margin
    if measure == "rows":
        parts = [("rows_curated", "bar-curated"), ("rows_quarantined", "bar-quarantined"),
                 ("rows_duplicate", "bar-duplicate")]  # fmt: skip
    else:
        parts = [("raw_bytes", "bar-bytes")]
    totals = [sum(getattr(h, p) for p, _ in parts) for h in hours]
    if not hours or not any(totals):
        return None
    scale = LinearScale.fitting(totals)
    step = (right - left) / len(hours)
    bars = []
    for i, (h, total) in enumerate(zip(hours, totals, strict=True)):
        y, segments = float(bottom), []
        for name, css in parts:
            size = scale.unit(getattr(h, name)) * (bottom - top)
            if size > 0:
                y -= size
                segments.append((round(y, 1), round(size, 1), css))
        what = (f"{h.rows_in:,} rows in: {h.rows_curated:,} curated, {h.rows_quarantined:,} quarantined, "
                f"{h.rows_duplicate:,} duplicate ({h.batches} batches)" if measure == "rows"
                else f"{human_bytes(h.raw_bytes)} written to raw")  # fmt: skip
        bars.append(
            Bar(
                round(left + i * step + step * 0.1, 1),
                round(step * 0.8, 1),
                segments,
                f"{h.start:%Y-%m-%d %H:00} UTC · {what}" if total else f"{h.start:%H:00} UTC · nothing",
            )
        )
    label = compact if measure == "rows" else human_bytes
    y_ticks = [Tick(round(bottom - f * (bottom - top), 1), label(scale.top * f)) for f in (0.0, 0.5, 1.0)]
    every = max(1, len(hours) // 8)
    x_ticks = [Tick(round(left + (i + 0.5) * step, 1), f"{h.start:%m-%d %H:00}" if h.start.hour == 0 or i == 0
                    else f"{h.start:%H:00}") for i, h in enumerate(hours) if i % every == 0]  # fmt: skip
    return BarChart(width, height, left, right, bottom, y_ticks, x_ticks, bars)


def human_bytes(value: float) -> str:
    """``value`` bytes in B, KiB, MiB or GiB."""
    for size, unit in ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
        if value >= size:
            return f"{value / size:.3g} {unit}"
    return f"{value:.0f} B"
