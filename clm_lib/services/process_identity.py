"""Which process a pid names: the pid and its start mark, which a wall-clock step cannot move.

psutil's ``create_time()`` is boot time plus the process's start in ticks, and Linux derives boot time from the
wall clock. When the clock is stepped (NTP, or a VM resumed after a pause or a snapshot), the create_time of every
running process moves with it, so comparing it with a file's mtime, or with a value read before the step, calls a
live process dead (a CI VM did exactly that to a whole stack mid-run). The start in ticks since boot,
``/proc/<pid>/stat`` field 22, never moves; elsewhere create_time is the fallback.
"""

from __future__ import annotations

from pathlib import Path

import psutil

_CREATED = "created:"


def start_mark(pid: int) -> str | None:
    """``ticks:<n>`` (Linux) or ``created:<epoch>``: what tells this process from a later one with its pid."""
    try:
        # The command name in parentheses may hold spaces or ")": split after the last one.
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return f"ticks:{int(fields[19])}"
    except (OSError, IndexError, ValueError):
        pass
    try:
        return f"{_CREATED}{psutil.Process(pid).create_time():.2f}"
    except psutil.Error:
        return None


def is_same(pid: int, mark: str) -> bool:
    """True when ``pid`` is still the process that ``mark`` was taken of."""
    now = start_mark(pid)
    if now is None:
        return False
    if now.startswith(_CREATED) and mark.startswith(_CREATED):
        return abs(float(now[len(_CREATED) :]) - float(mark[len(_CREATED) :])) < 1.0
    return now == mark
