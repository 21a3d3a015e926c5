"""The accuracy matrix of continual learning and the two numbers read off it.

``R[i][j]`` is the accuracy (0-100) on task ``j``'s held-out set after update ``i``; ``None`` where
task ``j`` had not been seen yet. "Accuracy" is the task's primary metric (``evaluation.metrics``; exact match by
default), the same one down a column. Following Lopez-Paz & Ranzato (GEM, 2017):

* average accuracy ``AA = mean_j R[T][j]`` over the tasks seen by the last update ``T``;
* backward transfer ``BWT = mean_{j<T} (R[T][j] - R[first(j)][j])``, where ``first(j)`` is the
  update in which task ``j`` was first learned. Negative BWT is forgetting. Undefined (``None``)
  until a second task exists.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class AccuracyMatrix:
    tasks: list[str]
    """Column order: tasks in the order they were first learned."""
    rows: list[list[float | None]]
    """One row per update along a model's lineage, oldest first."""
    learned_at: dict[str, int]
    """Task -> index of the update that first learned it."""

    @property
    def last(self) -> list[float | None]:
        return self.rows[-1] if self.rows else []

    @property
    def average_accuracy(self) -> float:
        seen = [v for v in self.last if v is not None]
        return sum(seen) / len(seen) if seen else 0.0

    @property
    def backward_transfer(self) -> float | None:
        if not self.rows:
            return None
        t = len(self.rows) - 1
        deltas = []
        for j, task in enumerate(self.tasks):
            first = self.learned_at[task]
            if first < t and self.rows[t][j] is not None and self.rows[first][j] is not None:
                deltas.append(self.rows[t][j] - self.rows[first][j])
        return sum(deltas) / len(deltas) if deltas else None

    def forgetting(self) -> dict[str, float]:
        """Per old task: best accuracy it ever had minus its accuracy now (Chaudhry et al., 2018)."""
        if len(self.rows) < 2:
            return {}
        out = {}
        for j, task in enumerate(self.tasks):
            history = [r[j] for r in self.rows[:-1] if r[j] is not None]
            if history and self.last[j] is not None and self.learned_at[task] < len(self.rows) - 1:
                out[task] = max(history) - self.last[j]
        return out


def build_matrix(updates: Sequence[tuple[Sequence[str], dict[str, float]]]) -> AccuracyMatrix:
    """Build R from updates, oldest first: each is (tasks learned so far in order, task -> score)."""
    tasks: list[str] = []
    learned_at: dict[str, int] = {}
    for i, (learned, _scores) in enumerate(updates):
        for task in learned:
            if task not in learned_at:
                learned_at[task] = i
                tasks.append(task)
    rows = [[scores.get(t) if learned_at[t] <= i else None for t in tasks] for i, (_l, scores) in enumerate(updates)]
    return AccuracyMatrix(tasks=tasks, rows=rows, learned_at=learned_at)
