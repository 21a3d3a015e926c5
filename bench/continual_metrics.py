"""The numbers of the continual-learning benchmark, computed from accuracy matrices and measured costs.

Pure functions (no torch): ``bench/continual.py`` feeds them, ``tests/bench/test_continual_metrics.py`` checks
them. Accuracies are 0-100; the matrix conventions (AA, BWT, forgetting) are those of
:mod:`clm_lib.evaluation.matrix`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from clm_lib.evaluation.matrix import AccuracyMatrix, build_matrix


def matrix_from_rows(tasks: Sequence[str], rows: Sequence[Mapping[str, float]]) -> AccuracyMatrix:
    """R from one score dict per update, task ``i`` being learned at update ``i`` (the benchmark's stream)."""
    return build_matrix([(tasks[: i + 1], dict(scores)) for i, scores in enumerate(rows)])


def gap_closure(aa: float, aa_sequential: float, aa_joint: float) -> float | None:
    """``(AA - AA_seq) / (AA_joint - AA_seq)``: 0 is as bad as plain fine-tuning, 1 as good as joint training.

    Undefined (``None``) when joint training does not beat sequential fine-tuning: then the stream shows no
    forgetting worth closing and no ratio would mean anything.
    """
    span = aa_joint - aa_sequential
    if span <= 0:
        return None
    return (aa - aa_sequential) / span


def learning_ratios(matrix: AccuracyMatrix, single_task: Mapping[str, float]) -> dict[str, float | None]:
    """Task -> ``R[i][i] / single-task score``: how well a task was learnt at its own update, against an adapter
    trained on that task alone. ``None`` where the single-task score is 0 (nothing to compare with)."""
    out: dict[str, float | None] = {}
    for task in matrix.tasks:
        i = matrix.learned_at[task]
        own = matrix.rows[i][matrix.tasks.index(task)]
        ref = single_task.get(task)
        out[task] = None if own is None or not ref else own / ref
    return out


UNITS = ("tokens", "seconds", "cpu_seconds")


@dataclass(frozen=True)
class Cost:
    """What one training run cost: tokens trained on (prompt + response, padding excluded), wall seconds, and
    CPU seconds of the process (less sensitive than wall time to other work on a shared machine)."""

    tokens: int
    seconds: float
    cpu_seconds: float


def cost_ratios(costs: Sequence[Cost], reference: Sequence[Cost]) -> dict[str, Any]:
    """Cost of each update relative to retraining from scratch on all data seen so far, at the same update.

    ``per_update``: the ratio at every update; ``last``: at the last one; ``cumulative``: the whole stream's
    cost over the whole stream's retraining cost (``sum(cost) / sum(reference)``, not a mean of ratios, so a
    cheap first update does not flatter it). Each for every unit of :class:`Cost`.
    """
    if len(costs) != len(reference) or not costs:
        raise ValueError(f"need one reference per update: {len(costs)} updates, {len(reference)} references")
    out: dict[str, Any] = {}
    for unit in UNITS:
        mine = [getattr(c, unit) for c in costs]
        ref = [getattr(c, unit) for c in reference]
        if any(r <= 0 for r in ref):
            raise ValueError(f"reference {unit} must be positive, got {ref}")
        out[unit] = {
            "per_update": [m / r for m, r in zip(mine, ref, strict=True)],
            "last": mine[-1] / ref[-1],
            "cumulative": sum(mine) / sum(ref),
        }
    return out


def summarize(matrix: AccuracyMatrix, single_task: Mapping[str, float]) -> dict[str, Any]:
    """AA, BWT, forgetting (per task and mean), R[i][i] and its ratio to the single-task score."""
    forgetting = matrix.forgetting()
    ratios = learning_ratios(matrix, single_task)
    known = [r for r in ratios.values() if r is not None]
    return {
        "tasks": matrix.tasks,
        "R": matrix.rows,
        "AA": matrix.average_accuracy,
        "BWT": matrix.backward_transfer,
        "forgetting": forgetting,
        "mean_forgetting": sum(forgetting.values()) / len(forgetting) if forgetting else None,
        "diagonal": {t: matrix.rows[matrix.learned_at[t]][j] for j, t in enumerate(matrix.tasks)},
        "learning_ratio": ratios,
        "min_learning_ratio": min(known) if known else None,
    }


def wording_summary(names: Mapping[str, float], wording_per_seed: Sequence[Mapping[str, float]]) -> dict[str, Any]:
    """A final model's held-out-name accuracy (``names``, per task) next to its held-out-wording accuracy (one
    score dict per seed, averaged), per task (in the order of ``names``) and as means over tasks; ``gap`` is names
    minus wordings."""
    tasks = [t for t in names if t in wording_per_seed[0]]
    wording = {t: sum(w[t] for w in wording_per_seed) / len(wording_per_seed) for t in tasks}
    names_mean = sum(names[t] for t in tasks) / len(tasks)
    wording_mean = sum(wording.values()) / len(tasks)
    return {
        "names": {t: names[t] for t in tasks},
        "wording": wording,
        "names_mean": names_mean,
        "wording_mean": wording_mean,
        "gap": names_mean - wording_mean,
    }


@dataclass(frozen=True)
class Target:
    """One target of issue 3: ``value`` must be ``>=`` (or ``<=``) ``bound``."""

    name: str
    value: float | None
    op: str
    bound: float

    @property
    def met(self) -> bool:
        if self.value is None:
            return False
        return self.value >= self.bound if self.op == ">=" else self.value <= self.bound

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "op": self.op, "bound": self.bound, "met": self.met}


def targets(arms: Mapping[str, Mapping[str, Any]], recommended: str, bounds: Mapping[str, float]) -> list[Target]:
    """Check ``bounds`` (keys as in ``TARGETS`` of ``bench/continual.py``; a missing key is not checked) on the
    arms' summaries: ``arms[name]`` holds :func:`summarize` output plus ``gap_closure`` and ``cost``
    (:func:`cost_ratios`)."""
    seq, rec = arms.get("sequential"), arms.get(recommended)
    checks: list[tuple[str, str, Any, str]] = [("sequential_bwt", "sequential BWT", seq and seq["BWT"], "<=")]
    if rec is not None:
        cost = rec.get("cost") or {}
        checks += [
            ("gap_closure", f"{recommended} gap closure", rec.get("gap_closure"), ">="),
            ("bwt", f"{recommended} BWT", rec["BWT"], ">="),
            ("learning", f"{recommended} min R[i][i] / single-task", rec["min_learning_ratio"], ">="),
        ]
        for unit in ("tokens", "seconds"):
            value = cost.get(unit, {}).get("last")
            checks.append(("cost", f"{recommended} last update cost / retraining ({unit})", value, "<="))
    return [Target(name, value, op, bounds[key]) for key, name, value, op in checks if key in bounds]
