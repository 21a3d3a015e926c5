"""Prior shift: a chi-square test of the task (or label) mix between the windows.

Each side is subsampled (seeded) to ``sample_size`` rows, so a fixed shift in shares has the same chance of
being flagged at any window size. When some expected count is below 5 the asymptotic chi-square is unreliable,
and scipy's permutation version of the same test is used instead. A task that appears only in the current
window is a shift too (its reference count is 0). Jensen-Shannon distance is reported as the effect size.
"""

from __future__ import annotations

import numpy as np
from scipy import stats
from scipy.spatial.distance import jensenshannon

from clm_lib.drift.base import Detector, DriftContext, DriftResult, Status, register_detector
from clm_lib.drift.config import TaskMixSettings
from clm_lib.drift.window import TextWindow


def _column(window: TextWindow, name: str) -> np.ndarray | None:
    return window.tasks if name == "task" else window.responses


class TaskMix(Detector):
    settings_type = TaskMixSettings
    settings: TaskMixSettings

    def _check(self, reference: TextWindow, current: TextWindow, context: DriftContext) -> DriftResult:
        s = self.settings
        ref_col, cur_col = _column(reference, s.column), _column(current, s.column)
        if ref_col is None or cur_col is None:
            return self.insufficient(f"a window carries no {s.column} column")
        ref_vals = [v for v in ref_col if v is not None]
        cur_vals = [v for v in cur_col if v is not None]
        missing = len(ref_col) - len(ref_vals) + len(cur_col) - len(cur_vals)
        ref_vals = self._sample(ref_vals, "reference")
        cur_vals = self._sample(cur_vals, "current")
        n_ref, n_cur = len(ref_vals), len(cur_vals)
        if min(n_ref, n_cur) < s.min_samples:
            return self.insufficient(
                f"{n_ref} reference and {n_cur} current rows name a {s.column} ({missing} do not); "
                f"at least {s.min_samples} per side are needed",
                n_reference=n_ref,
                n_current=n_cur,
            )
        categories = sorted(set(ref_vals) | set(cur_vals))
        if len(categories) < 2:
            return self.insufficient(
                f"both windows hold a single {s.column} ({categories[0]!r}): a mix needs at least two",
                n_reference=n_ref,
                n_current=n_cur,
            )
        index = {c: i for i, c in enumerate(categories)}
        table = np.zeros((2, len(categories)), dtype=np.int64)
        np.add.at(table[0], [index[v] for v in ref_vals], 1)
        np.add.at(table[1], [index[v] for v in cur_vals], 1)
        expected = table.sum(1, keepdims=True) * table.sum(0, keepdims=True) / table.sum()
        method = None
        if expected.min() < 5:
            method = stats.PermutationMethod(n_resamples=999, rng=self.rng("permutations"))
        res = stats.chi2_contingency(table, correction=False, method=method)
        p_value = float(res.pvalue)
        ref_share, cur_share = table[0] / n_ref, table[1] / n_cur
        jsd = float(jensenshannon(ref_share, cur_share, base=2))
        drift = p_value < s.alpha
        largest = int(np.argmax(np.abs(cur_share - ref_share)))
        change = (
            f"{categories[largest]} {ref_share[largest]:.0%} -> {cur_share[largest]:.0%}"
        )
        new = [c for c in categories if table[0, index[c]] == 0]
        head = f"the {s.column} mix moved" if drift else f"no evidence the {s.column} mix moved"
        explanation = (
            f"{head}: chi-square {res.statistic:.1f}, p={p_value:.3g} (alpha {s.alpha}, "
            f"{n_ref} vs {n_cur} rows); largest change {change}"
        )
        if new:
            explanation += f"; new: {', '.join(new)}"
        if missing:
            explanation += f"; {missing} rows without a {s.column} left out"
        return self.result(
            Status.OK,
            drift,
            explanation,
            statistic=float(res.statistic),
            p_value=p_value,
            threshold=s.alpha,
            n_reference=n_ref,
            n_current=n_cur,
            details={
                "column": s.column,
                "reference_share": dict(zip(categories, ref_share.round(4).tolist(), strict=True)),
                "current_share": dict(zip(categories, cur_share.round(4).tolist(), strict=True)),
                "jensen_shannon": jsd,
                "new_categories": new,
                "method": "permutation" if method is not None else "asymptotic",
                "rows_without_value": missing,
            },
        )

    def _sample(self, values: list, side: str) -> list:
        if len(values) <= self.settings.sample_size:
            return values
        idx = self.rng(side).choice(len(values), size=self.settings.sample_size, replace=False)
        return [values[i] for i in np.sort(idx)]


register_detector(name="task_mix", detector_cls=TaskMix)
