"""The promotion gate: a candidate replaces the champion only if no task it knew got worse."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from clm_lib.config import GateConfig
from clm_lib.evaluation.task_metrics import DEFAULT_METRIC


@dataclass(frozen=True)
class GateResult:
    passed: bool
    reasons: list[str] = field(default_factory=list)
    """Every check, passed or not, in words a reviewer can read."""


def _named(task: str, metrics: Mapping[str, str]) -> str:
    # Exact match goes unnamed, so reasons read as they did before metrics could be chosen.
    metric = metrics.get(task, DEFAULT_METRIC)
    return task if metric == DEFAULT_METRIC else f"{task} ({metric})"


def decide(
    candidate: dict[str, float],
    champion: dict[str, float] | None,
    cfg: GateConfig,
    metrics: Mapping[str, str] | None = None,
) -> GateResult:
    """Compare per-task scores (0-100) of the candidate against the current champion.

    Both are each task's primary metric (``metrics``: task -> its name, for the reasons; exact match if absent),
    the same metric on both sides (:func:`clm_lib.evaluation.stored_metrics.comparable`)."""
    metrics = metrics or {}
    reasons: list[str] = []
    passed = True
    champion = champion or {}
    if not candidate:
        return GateResult(False, ["candidate has no evaluation scores"])
    for task in sorted(champion):
        before = champion[task]
        after = candidate.get(task)
        if after is None:
            passed = False
            reasons.append(f"{_named(task, metrics)}: not evaluated on the candidate (champion had {before:.1f})")
            continue
        drop = before - after
        ok = drop <= cfg.max_task_drop
        passed &= ok
        verdict = "ok" if ok else "REGRESSED"
        reasons.append(
            f"{_named(task, metrics)}: {before:.1f} -> {after:.1f} ({-drop:+.1f}; budget -{cfg.max_task_drop:.1f}) "
            f"{verdict}"
        )
    for task in sorted(set(candidate) - set(champion)):
        ok = candidate[task] >= cfg.min_new_task_accuracy
        passed &= ok
        verdict = "ok" if ok else "TOO LOW"
        reasons.append(
            f"{_named(task, metrics)}: new task at {candidate[task]:.1f} (minimum {cfg.min_new_task_accuracy:.1f}) "
            f"{verdict}"
        )
    if not champion:
        reasons.insert(0, "no champion yet: first candidate is promoted if its new tasks pass")
    return GateResult(passed, reasons)
