"""The Performance screen's SVG shapes, computed here like :mod:`clm_lib.reporting.charts` (whose scales and labels
they reuse), so that a template only draws what it is given and nothing is fetched from a CDN.

Two shapes: a heatmap (versions down, tasks across, the accuracy in each cell) and a line chart with several
series on a numeric x axis (time, or a version's position), optionally with a threshold line.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from clm_lib.reporting.charts import BOTTOM, HEIGHT, LEFT, RIGHT, TOP, WIDTH, Scale, Tick, circle

PALETTE = ("#017cee", "#e8590c", "#2b8a3e", "#9c36b5", "#c92a2a", "#0b7285", "#5c940d", "#862e9c")
"""Series colours, in order; a page with more series than colours reuses them."""
HEAT = ("#f8c9c4", "#f9d0c0", "#fad8bd", "#fbe0bb", "#fce8ba", "#f6edb9", "#e8edb9", "#d9ebbb", "#c9e6bf",
        "#b9e0c3", "#a8d9c4")  # fmt: skip
"""Accuracy 0 .. 100 in eleven steps, the colours of the Overview's matrix table."""
CELL_H, HEAT_LEFT, HEAT_TOP = 24, 70, 22
MAX_MARKS = 240
"""Points per series that get a hover mark; past that only the line is drawn (a 30-day window has 120 steps)."""


@dataclass(frozen=True)
class Cell:
    x: float
    y: float
    w: float
    h: float
    fill: str
    text: str
    title: str
    learned: bool
    """The version that first learned the cell's task (the diagonal a reader compares a column against)."""


@dataclass(frozen=True)
class Heatmap:
    width: int
    height: int
    cells: list[Cell]
    rows: list[Tick]
    """Row labels at their vertical centres."""
    columns: list[Tick]
    """Column labels at their horizontal centres."""


def heatmap(
    rows: Sequence[str], columns: Sequence[str], values: Sequence[Sequence[float | None]], learned: Mapping[str, int]
) -> Heatmap:
    """``values[i][j]``: accuracy (0-100) of row ``i`` on column ``j``; None: not learned yet (no cell drawn).
    ``learned``: column -> the row that first learned it."""
    cols = max(1, len(columns))
    cell_w = (WIDTH - HEAT_LEFT - 10) / cols
    cells = []
    for i, row in enumerate(rows):
        for j, column in enumerate(columns):
            v = values[i][j] if j < len(values[i]) else None
            if v is None or not math.isfinite(v):
                continue
            step = min(max(round(v / 10.0), 0), len(HEAT) - 1)
            cells.append(
                Cell(x=round(HEAT_LEFT + j * cell_w + 1, 1), y=HEAT_TOP + i * CELL_H + 1, w=round(cell_w - 2, 1),
                     h=CELL_H - 2, fill=HEAT[step], text=f"{v:.1f}", title=f"{row} · {column}: {v:.1f}",
                     learned=learned.get(column) == i)
            )  # fmt: skip
    return Heatmap(
        width=WIDTH,
        height=HEAT_TOP + max(1, len(rows)) * CELL_H + 4,
        cells=cells,
        rows=[Tick(HEAT_TOP + i * CELL_H + CELL_H / 2, label) for i, label in enumerate(rows)],
        columns=[Tick(round(HEAT_LEFT + (j + 0.5) * cell_w, 1), label) for j, label in enumerate(columns)],
    )


@dataclass(frozen=True)
class Dot:
    d: str
    title: str
    classes: str = ""
    """CSS classes (a drift verdict's ``pt pt-drift``); empty: filled with the series colour."""


@dataclass(frozen=True)
class Line:
    name: str
    color: str
    runs: list[str]
    """``points`` of polylines, one per run of consecutive measured values."""
    dots: list[Dot]


@dataclass(frozen=True)
class LineChart:
    width: int
    height: int
    left: float
    right: float
    top: float
    bottom: float
    y_ticks: list[Tick]
    x_ticks: list[Tick]
    lines: list[Line]
    threshold: str
    """``points`` of the threshold (a step line where it changed); empty: none."""
    threshold_label: str
    threshold_label_y: float


@dataclass(frozen=True)
class XY:
    """One value of one series; ``value`` None breaks the line (nothing measured there)."""

    x: float
    value: float | None
    title: str
    classes: str = ""
    threshold: float | None = None


def line_chart(
    series: Mapping[str, Sequence[XY]],
    x_range: tuple[float, float],
    x_ticks: Sequence[tuple[float, str]],
    scale: Scale,
    *,
    gap: float | None = None,
    threshold_text: str = "",
) -> LineChart:
    """Lay each series out on ``x_range`` with ``scale`` on the y axis. Consecutive points more than ``gap`` apart
    on x are not joined (no traffic in between is no line, not a straight interpolation)."""
    left, right, top, bottom = LEFT, WIDTH - RIGHT, TOP, HEIGHT - BOTTOM
    lo, hi = x_range
    span = (hi - lo) or 1.0

    def x(v: float) -> float:
        return left + min(max((v - lo) / span, 0.0), 1.0) * (right - left)

    def y(v: float) -> float:
        return bottom - scale.unit(v) * (bottom - top)

    lines: list[Line] = []
    thresholds: list[tuple[float, float]] = []
    for k, (name, points) in enumerate(series.items()):
        runs, run, dots, previous = [], [], [], None
        ordered = sorted(points, key=lambda p: p.x)
        for p in ordered:
            if p.threshold is not None and math.isfinite(p.threshold):
                thresholds.append((p.x, p.threshold))
            measured = p.value is not None and math.isfinite(p.value)
            if not measured or (previous is not None and gap is not None and p.x - previous > gap):
                runs.extend([" ".join(run)] if len(run) > 1 else [])
                run = []
            if measured:
                px, py = x(p.x), y(p.value)
                run.append(f"{px:.1f},{py:.1f}")
                if len(ordered) <= MAX_MARKS or p.classes:
                    dots.append(Dot(circle(px, py, 3.4 if p.classes else 2.4), p.title, p.classes))
                previous = p.x
            else:
                previous = None
        if len(run) > 1:
            runs.append(" ".join(run))
        lines.append(Line(name, PALETTE[k % len(PALETTE)], runs, dots))
    threshold, label_y, last = _threshold(sorted(thresholds), x, y, left, right)
    return LineChart(
        width=WIDTH,
        height=HEIGHT,
        left=left,
        right=right,
        top=top,
        bottom=bottom,
        y_ticks=[Tick(round(bottom - u * (bottom - top), 1), label) for u, label in scale.ticks()],
        x_ticks=[Tick(round(x(at), 1), label) for at, label in x_ticks],
        lines=lines,
        threshold=threshold,
        threshold_label="" if last is None else f"{threshold_text} {scale.label(last)}".strip(),
        threshold_label_y=label_y,
    )


def _threshold(known, x, y, left, right) -> tuple[str, float, float | None]:
    if not known:
        return "", 0.0, None
    coords: list[str] = []
    for i, (at, value) in enumerate(known):
        if i and value == known[i - 1][1]:
            continue
        start = left if not coords else x(at)
        if coords:  # hold the previous value up to here, then step
            coords.append(f"{start:.1f},{coords[-1].split(',')[1]}")
        coords.append(f"{start:.1f},{y(value):.1f}")
    coords.append(f"{right:.1f},{y(known[-1][1]):.1f}")
    return " ".join(coords), round(y(known[-1][1]), 1), known[-1][1]
