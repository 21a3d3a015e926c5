"""Task metrics as an evaluation stores them, and scores of two evaluations put on the same metric.

``Evaluation.metrics`` holds, per task, every metric and which one was primary when it was written::

    {"billing": {"primary": "macro_f1", "values": {"exact_match": 81.0, "macro_f1": 64.2, ...}}, ...}

``Evaluation.scores`` is the primary value per task. An evaluation from before metrics were chosen has no
``metrics``: its scores are exact match. The primary metric of a task can change in the config between two
evaluations; a score compared with an older one (the gate, the accuracy matrix) is then looked up on the newer
evaluation's metric in the older one, so the two numbers always measure the same thing where that is possible.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from clm_lib.evaluation.task_metrics import DEFAULT_METRIC

Stored = Mapping[str, Any]
"""``Evaluation.metrics``: task -> ``{"primary": name, "values": {name: score}}``."""


def record(values: Mapping[str, Mapping[str, float]], primary: Mapping[str, str]) -> dict[str, Any]:
    """The ``metrics`` column from each task's metric values and its primary metric (values rounded as scores)."""
    return {
        task: {"primary": primary[task], "values": {name: round(v, 2) for name, v in by_name.items()}}
        for task, by_name in values.items()
    }


def primary_of(metrics: Stored | None, task: str) -> str:
    """The metric an evaluation's score of ``task`` is: exact match where it stored none."""
    return str(((metrics or {}).get(task) or {}).get("primary", DEFAULT_METRIC))


def primary_metrics(scores: Mapping[str, Any], metrics: Stored | None) -> dict[str, str]:
    """Task -> the metric each of an evaluation's scores is."""
    return {task: primary_of(metrics, task) for task in scores}


def value_of(scores: Mapping[str, Any], metrics: Stored | None, task: str, metric: str) -> float | None:
    """An evaluation's ``metric`` on ``task``, or None where it did not compute it."""
    stored = ((metrics or {}).get(task) or {}).get("values") or {}
    if metric in stored:
        return float(stored[metric])
    if task in scores and primary_of(metrics, task) == metric:
        return float(scores[task])
    return None


def exact_match_scores(scores: Mapping[str, Any], metrics: Stored | None) -> dict[str, float]:
    """An evaluation's exact-match accuracy per task, whichever metric its scores are (where it has one)."""
    values = {task: value_of(scores, metrics, task, DEFAULT_METRIC) for task in scores}
    return {task: v for task, v in values.items() if v is not None}


def on_metric(scores: Mapping[str, Any], metrics: Stored | None, primary: Mapping[str, str]) -> dict[str, float]:
    """An evaluation's scores re-read on ``primary`` (task -> metric), each task whose value it has on that metric;
    a task it has no such value for keeps its stored score."""
    out = {}
    for task, score in scores.items():
        value = value_of(scores, metrics, task, primary[task]) if task in primary else None
        out[task] = float(score) if value is None else value
    return out


def comparable(
    candidate: tuple[Mapping[str, Any], Stored | None], champion: tuple[Mapping[str, Any], Stored | None]
) -> tuple[dict[str, float], dict[str, float], dict[str, str], list[str]]:
    """Candidate and champion scores on one metric per task, that metric, and a note per task compared otherwise.

    Each task is compared on the candidate's primary metric. Where the champion lacks that one (an evaluation from
    before the config chose it), both are read on the champion's primary, which the candidate always has, since
    every metric is stored. ``candidate``/``champion`` are ``(scores, metrics)`` of an evaluation."""
    (cand_scores, cand_metrics), (champ_scores, champ_metrics) = candidate, champion
    cand = {t: float(v) for t, v in cand_scores.items()}
    champ: dict[str, float] = {}
    used = primary_metrics(cand_scores, cand_metrics)
    notes = []
    for task, stored in champ_scores.items():
        metric = used.get(task, primary_of(champ_metrics, task))
        before = value_of(champ_scores, champ_metrics, task, metric)
        if before is None and task in cand:
            theirs = primary_of(champ_metrics, task)
            after = value_of(cand_scores, cand_metrics, task, theirs)
            if after is not None:
                notes.append(f"{task}: compared on {theirs}, the champion has no {metric} score")
                cand[task], before, metric = after, value_of(champ_scores, champ_metrics, task, theirs), theirs
        champ[task] = float(stored) if before is None else before
        used[task] = metric
    return cand, champ, used, notes


def gate_inputs(
    candidate: Any, champion: Any | None
) -> tuple[dict[str, float], dict[str, float] | None, dict[str, str], list[str]]:
    """What the gate compares for two stored evaluations (rows with ``scores`` and ``metrics``; ``champion`` None for
    a first version): the candidate's and the champion's scores on one metric per task, that metric, and notes. The
    gate, its what-if on the Configuration screen and the approval request all read them here, so none of them
    compares two metrics when a task's metric changed between the versions."""
    if champion is None:
        return dict(candidate.scores), None, primary_metrics(candidate.scores, candidate.metrics), []
    return comparable((candidate.scores, candidate.metrics), (champion.scores, champion.metrics))
