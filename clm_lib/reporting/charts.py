"""Small server-side SVG charts: every coordinate is computed here, so a template only draws what it is given.

One shape of chart: a series over checks on an x axis shared by all series of a page (one slot per check, oldest
on the left), a value per check on a y axis where *up means more alarming*, the threshold the value is compared
to, and one mark per check whose CSS classes say what that check concluded. Two y scales: linear (a count
against its trigger level) and log p-value (the axis runs from p = 1 at the bottom to small p at the top, so a
test "fires" above its alpha line, like a count above its threshold).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

WIDTH, HEIGHT = 960, 124
"""The viewBox: about the width the chart is shown at on a laptop, so 11-unit text reads as ~11 px."""
LEFT, RIGHT, TOP, BOTTOM = 50, 62, 10, 22
"""Margins for the y labels (left), the threshold's label (right) and the x labels (bottom)."""
STRIP_HEIGHT = 34
"""A row of marks without a y axis (:func:`strip_chart`)."""
MAX_DECADES = 10
"""p-values below 1e-10 sit on the top edge, drawn as an off-scale triangle (permutation tests stop at 1/201
anyway; a chi-square on 100k rows can give 1e-300, which would flatten every other point)."""

ALPHA = "\N{GREEK SMALL LETTER ALPHA}"
AT_LEAST = "\N{GREATER-THAN OR EQUAL TO}"
_R = 3.6  # radius of a mark
_HALO = 7.0  # radius of the ring around a mark that requested a retraining


@dataclass(frozen=True)
class Point:
    """One check's value of one series, as the page's builder hands it over."""

    slot: int
    value: float | None
    """None: nothing was measured (insufficient data, an error); drawn as a hollow mark on the baseline."""
    threshold: float | None
    classes: str
    """CSS classes of the mark (what the check concluded)."""
    title: str
    """Hover text."""
    halo: bool = False
    """Ring the mark: this check's result requested a retraining."""


@dataclass(frozen=True)
class Tick:
    at: float
    label: str


@dataclass(frozen=True)
class Note:
    """A short text drawn centred above a mark."""

    x: float
    y: float
    text: str


@dataclass(frozen=True)
class Mark:
    d: str
    """SVG path of the mark."""
    classes: str
    title: str
    halo: str | None = None
    """SVG path of a ring around it, or None."""


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    left: float
    right: float
    top: float
    bottom: float
    y_ticks: list[Tick]
    x_ticks: list[Tick]
    lines: list[str]
    """``points`` attributes of polylines, one per run of consecutive measured checks."""
    threshold: str
    """``points`` attribute of the threshold line (a step line where the threshold changed); empty: none."""
    threshold_label: str
    threshold_label_y: float
    marks: list[Mark]
    notes: list[Note] = field(default_factory=list)


class Scale(Protocol):
    def unit(self, value: float) -> float:
        """``value`` as a height between 0 (baseline) and 1 (top edge)."""

    def off_scale(self, value: float) -> bool: ...

    def ticks(self) -> list[tuple[float, str]]:
        """(unit height, label) pairs."""

    def label(self, value: float) -> str: ...


@dataclass(frozen=True)
class LinearScale:
    top: float

    @classmethod
    def fitting(cls, values: Sequence[float | None]) -> LinearScale:
        """From 0 to a round number above every value (and threshold) given."""
        peak = max([v for v in values if v is not None and math.isfinite(v)] + [0.0])
        return cls(_round_up(peak * 1.1) if peak > 0 else 1.0)

    def unit(self, value: float) -> float:
        return min(max(value / self.top, 0.0), 1.0)

    def off_scale(self, value: float) -> bool:
        return value > self.top

    def ticks(self) -> list[tuple[float, str]]:
        return [(f, self.label(self.top * f)) for f in (0.0, 0.5, 1.0)]

    def label(self, value: float) -> str:
        return compact(value)


@dataclass(frozen=True)
class LogPScale:
    decades: int

    @classmethod
    def fitting(cls, p_values: Sequence[float | None]) -> LogPScale:
        """From p = 1 up to the decade above the smallest p-value (and alpha) given, at most :data:`MAX_DECADES`."""
        depth = max([_decades(p) for p in p_values if p is not None] + [1.0])
        return cls(max(2, min(MAX_DECADES, math.ceil(depth + 0.25))))

    def unit(self, value: float) -> float:
        return min(_decades(value), self.decades) / self.decades

    def off_scale(self, value: float) -> bool:
        return _decades(value) > self.decades

    def ticks(self) -> list[tuple[float, str]]:
        step = 1 if self.decades <= 5 else 2
        return [(k / self.decades, p_label(10.0**-k)) for k in range(0, self.decades + 1, step)]

    def label(self, value: float) -> str:
        return p_label(value)


def series_chart(points: Sequence[Point], slots: int, x_ticks: Sequence[tuple[int, str]], scale: Scale) -> Chart:
    """Lay ``points`` (at most one per slot) out on ``slots`` check slots with ``scale`` on the y axis."""
    slots = max(1, slots)
    left, right, top, bottom = LEFT, WIDTH - RIGHT, TOP, HEIGHT - BOTTOM
    step = (right - left) / slots

    def x(slot: int) -> float:
        return left + (slot + 0.5) * step

    def y(value: float) -> float:
        return bottom - scale.unit(value) * (bottom - top)

    ordered = sorted(points, key=lambda p: p.slot)
    lines: list[str] = []
    run: list[str] = []
    previous_slot = None
    marks: list[Mark] = []
    for p in ordered:
        measured = p.value is not None and math.isfinite(p.value)
        if not measured or (previous_slot is not None and p.slot != previous_slot + 1):
            lines.extend([" ".join(run)] if len(run) > 1 else [])
            run = []
        if measured:
            px, py = x(p.slot), y(p.value)
            run.append(f"{px:.1f},{py:.1f}")
            shape = _triangle(px, py + 4) if scale.off_scale(p.value) else circle(px, py, _R)
            marks.append(Mark(shape, p.classes, p.title, circle(px, py, _HALO) if p.halo else None))
        else:
            marks.append(Mark(circle(x(p.slot), bottom - 0.5, _R - 0.6), p.classes, p.title))
        previous_slot = p.slot
    if len(run) > 1:
        lines.append(" ".join(run))
    threshold, threshold_y, threshold_value = _threshold_line(ordered, left, right, step, y)
    return Chart(
        width=WIDTH,
        height=HEIGHT,
        left=left,
        right=right,
        top=top,
        bottom=bottom,
        y_ticks=[Tick(round(bottom - u * (bottom - top), 1), label) for u, label in scale.ticks()],
        x_ticks=[Tick(round(x(slot), 1), label) for slot, label in x_ticks],
        lines=lines,
        threshold=threshold,
        threshold_label="" if threshold_value is None else _threshold_text(scale, threshold_value),
        threshold_label_y=threshold_y,
        marks=marks,
    )


def strip_chart(points: Sequence[Point], slots: int, notes: Mapping[int, str]) -> Chart:
    """One row of marks on the x slots of :func:`series_chart` (same width, no y axis): a page's per-check
    summary lined up above its series. ``notes``: slot -> a short text above that slot's mark."""
    slots = max(1, slots)
    left, right = LEFT, WIDTH - RIGHT
    step = (right - left) / slots
    mid = STRIP_HEIGHT - 11.0
    marks = []
    for p in points:
        px = left + (p.slot + 0.5) * step
        marks.append(Mark(circle(px, mid, _R), p.classes, p.title, circle(px, mid, _HALO) if p.halo else None))
    return Chart(
        width=WIDTH,
        height=STRIP_HEIGHT,
        left=left,
        right=right,
        top=0,
        bottom=STRIP_HEIGHT,
        y_ticks=[],
        x_ticks=[],
        lines=[],
        threshold="",
        threshold_label="",
        threshold_label_y=0.0,
        marks=marks,
        notes=[Note(round(left + (slot + 0.5) * step, 1), mid - 10, text) for slot, text in notes.items()],
    )


def _threshold_line(points, left, right, step, y) -> tuple[str, float, float | None]:
    """A step line through each point's threshold, held until the next point's; its last value and height."""
    known = [(p.slot, p.threshold) for p in points if p.threshold is not None and math.isfinite(p.threshold)]
    if not known:
        return "", 0.0, None
    coords: list[str] = []
    for i, (slot, value) in enumerate(known):
        start = left if i == 0 else left + slot * step
        end = right if i == len(known) - 1 else left + known[i + 1][0] * step
        coords += [f"{start:.1f},{y(value):.1f}", f"{end:.1f},{y(value):.1f}"]
    return " ".join(coords), round(y(known[-1][1]), 1), known[-1][1]


def _threshold_text(scale: Scale, value: float) -> str:
    return f"{ALPHA} {scale.label(value)}" if isinstance(scale, LogPScale) else f"{AT_LEAST} {scale.label(value)}"


def circle(cx: float, cy: float, r: float) -> str:
    """An SVG path of a circle (one path per mark, so a mark is one element to style and title)."""
    return f"M{cx - r:.1f},{cy:.1f}a{r:.1f},{r:.1f} 0 1,0 {2 * r:.1f},0a{r:.1f},{r:.1f} 0 1,0 {-2 * r:.1f},0Z"


def _triangle(cx: float, cy: float) -> str:
    return f"M{cx:.1f},{cy - 8:.1f}L{cx + 4.5:.1f},{cy:.1f}L{cx - 4.5:.1f},{cy:.1f}Z"


def _decades(p: float) -> float:
    """-log10(p), with p = 0 (underflow) as far up as anything can go."""
    return -math.log10(p) if p > 0 else float(MAX_DECADES + 1)


def _round_up(value: float) -> float:
    """The first round number (1, 1.5, 2, 2.5, 3, 4, 5, 6, 8 times a power of ten) at or above ``value``."""
    power = 10.0 ** math.floor(math.log10(value))
    return next(m * power for m in (1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10) if m * power >= value)


def p_label(p: float) -> str:
    """A p-value for an axis or a table: 0.05, 0.003, 2e-07, < 1e-300."""
    if p <= 0:
        return "< 1e-300"
    if p >= 0.001:
        return f"{p:.3g}"
    mantissa, exponent = f"{p:.0e}".split("e")
    return f"{mantissa}e-{int(exponent[1:])}" if mantissa != "1" else f"1e-{int(exponent[1:])}"


def compact(value: float) -> str:
    """A count for an axis: 950, 2k, 2.5k, 1.2M."""
    for size, suffix in ((1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:.3g}{suffix}"
    return f"{value:.3g}"
