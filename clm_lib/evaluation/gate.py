"""The promotion gate: a candidate replaces the champion only if no task it knew got worse."""

from __future__ import annotations

from dataclasses import dataclass, field

from clm_lib.config import GateConfig


@dataclass(frozen=True)
class GateResult:
    passed: bool
    reasons: list[str] = field(default_factory=list)
    """Every check, passed or not, in words a reviewer can read."""


def decide(candidate: dict[str, float], champion: dict[str, float] | None, cfg: GateConfig) -> GateResult:
    """Compare per-task accuracies (0-100) of the candidate against the current champion."""
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
            reasons.append(f"{task}: not evaluated on the candidate (champion had {before:.1f})")
            continue
        drop = before - after
        ok = drop <= cfg.max_task_drop
        passed &= ok
        verdict = "ok" if ok else "REGRESSED"
        reasons.append(f"{task}: {before:.1f} -> {after:.1f} ({-drop:+.1f}; budget -{cfg.max_task_drop:.1f}) {verdict}")
    for task in sorted(set(candidate) - set(champion)):
        ok = candidate[task] >= cfg.min_new_task_accuracy
        passed &= ok
        verdict = "ok" if ok else "TOO LOW"
        reasons.append(f"{task}: new task at {candidate[task]:.1f} (minimum {cfg.min_new_task_accuracy:.1f}) {verdict}")
    if not champion:
        reasons.insert(0, "no champion yet: first candidate is promoted if its new tasks pass")
    return GateResult(passed, reasons)
