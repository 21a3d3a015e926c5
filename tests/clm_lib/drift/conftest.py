"""Windows of demo tickets for the drift tests (fixtures, since tests run with ``--import-mode=importlib``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest

from clm_lib.demo.stream import generate_task
from clm_lib.drift.window import TextWindow

TASKS = ("routers", "billing", "thermostats")


def _mix(tasks: Sequence[str], n_per_task: int, seed: int) -> list[dict[str, str]]:
    rows = [r for t in tasks for r in generate_task(t, n_per_task, seed)]
    # Interleave tasks, as arrivals would be, so a slice of the window is not one task.
    return [rows[(i % len(tasks)) * n_per_task + i // len(tasks)] for i in range(len(rows))]


@pytest.fixture(scope="session")
def mix() -> Callable[..., list[dict[str, str]]]:
    """``mix(tasks, n_per_task, seed)``: demo tickets of several product lines, interleaved."""
    return _mix


@pytest.fixture(scope="session")
def reference() -> TextWindow:
    """600 tickets of three product lines: what the champion was trained on."""
    return TextWindow.from_records(_mix(TASKS, 200, seed=1))


@pytest.fixture(scope="session")
def same() -> TextWindow:
    """600 more tickets of the same distribution (another seed): must not look like drift."""
    return TextWindow.from_records(_mix(TASKS, 200, seed=2))


@pytest.fixture(scope="session")
def new_vocabulary() -> TextWindow:
    """Half the rows are EV-charger tickets under the reference's task labels: the words move, the mix does not."""
    base = _mix(TASKS, 200, seed=3)
    chargers = generate_task("ev_chargers", len(base), seed=3)
    rows = [{**b, "prompt": c["prompt"]} if i % 2 else b for i, (b, c) in enumerate(zip(base, chargers, strict=True))]
    return TextWindow.from_records(rows)
