"""Concept drift: does the champion answer newly labelled rows worse than its evaluation said it would?

The current window's labelled rows (curated rows carry the desk's answer; feedback rows too) are subsampled
(seeded) to ``sample_size`` and scored with ``context.score_fn``. Per task the champion was evaluated on,
a one-sided Fisher exact test compares its accuracy on the new rows with its evaluation accuracy
(``context.eval_scores``); the p-values are Holm-corrected across tasks. A task fires when its corrected
p < ``alpha`` and its accuracy dropped by at least ``min_drop`` points. Tasks the champion never learned are
not concept drift (the task-mix detector sees them) and are listed, not tested. The reference window is not
used: the reference is the evaluation score.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from clm_lib.drift.base import Detector, DriftContext, DriftResult, Status, register_detector
from clm_lib.drift.config import ConceptSettings
from clm_lib.drift.stats import holm
from clm_lib.drift.window import TextWindow


class Concept(Detector):
    settings_type = ConceptSettings
    settings: ConceptSettings

    def check(self, reference: TextWindow, current: TextWindow, context: DriftContext | None = None) -> DriftResult:
        # The reference window plays no part here, so an empty one must not make the result "insufficient".
        return super().check(current, current, context)

    def _check(self, reference: TextWindow, current: TextWindow, context: DriftContext) -> DriftResult:
        s = self.settings
        if context.score_fn is None or not context.eval_scores:
            return self.insufficient("no champion with an evaluation score to compare with yet")
        if current.responses is None:
            return self.insufficient("the current window carries no labels (responses) to score against")
        labelled = current.usable()
        keep = np.array([r is not None and t in context.eval_scores for r, t in zip(labelled.responses,
                                                                                  labelled.tasks, strict=True)])
        unknown = sorted({t for t in labelled.tasks if t is not None and t not in context.eval_scores})
        labelled = labelled.take(np.flatnonzero(keep)).sample(s.sample_size, self.rng("current"))
        scores = np.asarray(context.score_fn(labelled), dtype=float) if len(labelled) else np.zeros(0)
        per_task: dict[str, dict] = {}
        scored = np.isfinite(scores)  # a row the scorer could not handle is left out, not counted as wrong
        for task in sorted(set(labelled.tasks.tolist())):
            rows = (labelled.tasks == task) & scored
            n_new = int(rows.sum())
            if n_new < s.min_samples:
                per_task[task] = {"new_n": n_new, "tested": False}
                continue
            acc_eval, n_eval = context.eval_scores[task]
            k_eval = round(acc_eval / 100 * n_eval)
            k_new = round(float(scores[rows].sum()))
            # alternative="greater": the evaluation's odds of a right answer exceed the new rows' odds.
            res = stats.fisher_exact([[k_eval, n_eval - k_eval], [k_new, n_new - k_new]], alternative="greater")
            per_task[task] = {
                "eval_accuracy": float(acc_eval),
                "eval_n": int(n_eval),
                "new_accuracy": 100.0 * k_new / n_new,
                "new_n": n_new,
                "drop": float(acc_eval) - 100.0 * k_new / n_new,
                "p_value": float(res.pvalue),
                "tested": True,
            }
        tested = [t for t, v in per_task.items() if v["tested"]]
        if not tested:
            return self.insufficient(
                f"no task the champion was evaluated on has {s.min_samples} new labelled rows "
                f"({ {t: v['new_n'] for t, v in per_task.items()} }); not evaluated: {unknown or 'none'}",
                n_current=len(labelled),
            )
        for task, adjusted in zip(tested, holm([per_task[t]["p_value"] for t in tested]), strict=True):
            v = per_task[task]
            v["p_adjusted"] = adjusted
            v["drift"] = adjusted < s.alpha and v["drop"] >= s.min_drop
        fired = [t for t in tested if per_task[t]["drift"]]
        worst = max(tested, key=lambda t: per_task[t]["drop"])
        if fired:
            parts = ", ".join(
                f"{t} {per_task[t]['eval_accuracy']:.0f}% -> {per_task[t]['new_accuracy']:.0f}% "
                f"(p={per_task[t]['p_adjusted']:.3g})"
                for t in fired
            )
            explanation = f"the champion got worse on new labelled data: {parts}"
        else:
            w = per_task[worst]
            explanation = (
                f"no task dropped significantly: largest drop {worst} {w['eval_accuracy']:.0f}% -> "
                f"{w['new_accuracy']:.0f}% (Holm p={w['p_adjusted']:.3g}, floor {s.min_drop} points)"
            )
        explanation += f" (alpha {s.alpha}, {len(labelled)} new rows scored)"
        if unknown:
            explanation += f"; tasks the champion never learned, not tested: {', '.join(unknown)}"
        return self.result(
            Status.OK,
            bool(fired),
            explanation,
            statistic=float(per_task[worst]["drop"]),
            p_value=float(min(per_task[t]["p_adjusted"] for t in tested)),
            threshold=s.alpha,
            n_reference=int(sum(per_task[t]["eval_n"] for t in tested)),
            n_current=len(labelled),
            details={"tasks": per_task, "fired": fired, "untested_tasks": unknown,
                     "champion_version": context.champion_version},
        )


register_detector(name="concept", detector_cls=Concept)
