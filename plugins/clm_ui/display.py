"""How numbers, times and states are written on clm's pages (presentation only, no decisions)."""

from __future__ import annotations

from datetime import UTC, datetime

from clm_lib.reporting.display import clip
from clm_lib.reporting.volume import human_bytes

HEAT_STEPS = 10


def pct(value: float | None, digits: int = 1) -> str:
    """An accuracy in points (0-100), or an em dash when there is none."""
    return "—" if value is None else f"{value:.{digits}f}"


def signed(value: float | None, digits: int = 1) -> str:
    """A difference such as BWT, always with its sign (a rounded -0.0 reads as 0.0)."""
    if value is None:
        return "—"
    rounded = round(value, digits)
    return f"{rounded:+.{digits}f}" if rounded else f"{0:.{digits}f}"


def count(value: int | None) -> str:
    return "—" if value is None else f"{value:,}"


def heat(value: float | None) -> str:
    """CSS class of a matrix cell: ``heat-0`` (0-9.9) ... ``heat-10`` (100), ``heat-none`` for not yet seen."""
    if value is None:
        return "heat-none"
    return f"heat-{max(0, min(HEAT_STEPS, int(value // (100 / HEAT_STEPS))))}"


def when(value: datetime | None) -> str:
    """Absolute UTC time, to the minute."""
    return "—" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def ago(value: datetime | None, now: datetime | None = None) -> str:
    """A rough age ("3 min ago") for scanning a table; the exact time goes in the title attribute."""
    if value is None:
        return "—"
    seconds = max(0, int(((now or datetime.now(UTC)) - value).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return "just now"


def duration(start: datetime | None, end: datetime | None) -> str:
    if start is None or end is None:
        return "—"
    seconds = max(0, int((end - start).total_seconds()))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def clock(value: datetime | None) -> str:
    """Time of day in UTC, to the second: the steps of one deployment are seconds apart."""
    return "—" if value is None else value.astimezone(UTC).strftime("%H:%M:%S")


def millis(value: float | None) -> str:
    """A switch time: milliseconds below one second, else seconds."""
    if value is None:
        return "—"
    return f"{value:.0f} ms" if value < 999.5 else f"{value / 1000:.1f} s"


HELPERS = {
    "pct": pct,
    "signed": signed,
    "count": count,
    "heat": heat,
    "when": when,
    "ago": ago,
    "duration": duration,
    "clock": clock,
    "millis": millis,
    "clip": clip,
    "human_bytes": human_bytes,
}
"""Passed to every clm template."""
