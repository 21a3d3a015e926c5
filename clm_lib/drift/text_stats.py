"""Data drift on cheap text statistics: K-S tests on lengths, a chi-square test on out-of-vocabulary rows, PSI.

Features per row: prompt length in characters, prompt length in words, mean word length, response length in
characters (when both windows carry responses), and whether the prompt has a word outside the reference
vocabulary. Each side is subsampled (seeded) to ``sample_size`` rows. The vocabulary is built from one half
of the reference sample and both the other half and the current sample are measured against it, so under no
drift the two OOV shares are exchangeable and the 2x2 chi-square test is calibrated. The K-S tests are
conservative with ties (word counts are integers), never liberal. The p-values are Holm-corrected across the
features, so the detector as a whole keeps its false-alarm rate at ``alpha``. PSI is the effect size shown.
"""

from __future__ import annotations

import re

import numpy as np
from scipy import stats

from clm_lib.drift.base import Detector, DriftContext, DriftResult, Status, register_detector
from clm_lib.drift.config import TextStatsSettings
from clm_lib.drift.stats import holm, psi
from clm_lib.drift.window import TextWindow

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def words(text: str) -> list[str]:
    """Lower-cased words with digits folded to 0 (ticket numbers are not vocabulary)."""
    return _WORD.findall(re.sub(r"\d", "0", text.lower()))


def _lengths(texts: np.ndarray) -> np.ndarray:
    return np.array([len(t) if isinstance(t, str) else np.nan for t in texts], dtype=float)


def _features(window: TextWindow, tokens: list[list[str]]) -> dict[str, np.ndarray]:
    feats = {
        "prompt_chars": _lengths(window.prompts),
        "prompt_words": np.array([len(t) for t in tokens], dtype=float),
        "mean_word_length": np.array([np.mean([len(w) for w in t]) if t else np.nan for t in tokens]),
    }
    if window.responses is not None:
        feats["response_chars"] = _lengths(window.responses)
    return feats


class TextStats(Detector):
    settings_type = TextStatsSettings
    settings: TextStatsSettings

    def _check(self, reference: TextWindow, current: TextWindow, context: DriftContext) -> DriftResult:
        s = self.settings
        ref = reference.usable().sample(s.sample_size, self.rng("reference"))
        cur = current.usable().sample(s.sample_size, self.rng("current"))
        dropped = reference.missing_prompts + current.missing_prompts
        if min(len(ref), len(cur)) < s.min_samples:
            return self.insufficient(
                f"{len(ref)} reference and {len(cur)} current rows have a prompt ({dropped} without); "
                f"at least {s.min_samples} per side are needed",
                n_reference=len(ref),
                n_current=len(cur),
            )
        ref_tokens = [words(t) for t in ref.prompts]
        cur_tokens = [words(t) for t in cur.prompts]
        ref_feats, cur_feats = _features(ref, ref_tokens), _features(cur, cur_tokens)
        tests: dict[str, dict] = {}
        skipped: dict[str, str] = {}
        for name in ref_feats.keys() & cur_feats.keys():
            a, b = ref_feats[name], cur_feats[name]
            a, b = a[np.isfinite(a)], b[np.isfinite(b)]
            if min(len(a), len(b)) < s.min_samples:
                skipped[name] = f"{len(a)} vs {len(b)} finite values"
                continue
            ks = stats.ks_2samp(a, b)
            tests[name] = {
                "test": "ks",
                "statistic": float(ks.statistic),
                "p_value": float(ks.pvalue),
                "psi": psi(a, b),
                "reference_mean": float(a.mean()),
                "current_mean": float(b.mean()),
            }
        tests["oov_rows"] = self._oov_test(ref_tokens, cur_tokens)
        if tests["oov_rows"] is None:
            del tests["oov_rows"]
            skipped["oov_rows"] = "reference too small to split into vocabulary and comparison halves"
        if not tests:
            return self.insufficient(f"no feature had enough usable values: {skipped}", n_reference=len(ref),
                                     n_current=len(cur))
        names = sorted(tests)
        for name, adjusted in zip(names, holm([tests[n]["p_value"] for n in names]), strict=True):
            tests[name]["p_adjusted"] = adjusted
            tests[name]["drift"] = adjusted < s.alpha and tests[name].get("psi", np.inf) >= s.min_psi
        drifted = [n for n in names if tests[n]["drift"]]
        worst = min(names, key=lambda n: tests[n]["p_adjusted"])
        if drifted:
            moved = ", ".join(self._describe(n, tests[n]) for n in drifted)
            explanation = f"text statistics moved: {moved} (Holm-corrected over {len(names)} tests, alpha {s.alpha})"
        else:
            explanation = (
                f"no text statistic moved: smallest Holm-corrected p={tests[worst]['p_adjusted']:.3f} "
                f"({worst}) over {len(names)} tests, alpha {s.alpha}"
            )
        if skipped:
            explanation += f"; not tested: {', '.join(f'{k} ({v})' for k, v in skipped.items())}"
        if dropped:
            explanation += f"; {dropped} rows without a prompt left out"
        return self.result(
            Status.OK,
            bool(drifted),
            explanation,
            statistic=float(tests[worst]["statistic"]),
            p_value=float(tests[worst]["p_adjusted"]),
            threshold=s.alpha,
            n_reference=len(ref),
            n_current=len(cur),
            details={"features": tests, "drifted": drifted, "skipped": skipped, "rows_without_prompt": dropped},
        )

    def _oov_test(self, ref_tokens: list[list[str]], cur_tokens: list[list[str]]) -> dict | None:
        half = len(ref_tokens) // 2
        if half < 2:
            return None
        # Which half builds the vocabulary is random, not "the first rows", so ordered windows do not bias it.
        order = self.rng("vocabulary").permutation(len(ref_tokens))
        vocab = {w for i in order[:half] for w in ref_tokens[i]}
        held = [ref_tokens[i] for i in order[half:]]

        def oov(rows: list[list[str]]) -> tuple[np.ndarray, float]:
            flags = np.array([any(w not in vocab for w in r) for r in rows])
            total = sum(len(r) for r in rows)
            rate = sum(w not in vocab for r in rows for w in r) / total if total else 0.0
            return flags, rate

        ref_flags, ref_rate = oov(held)
        cur_flags, cur_rate = oov(cur_tokens)
        table = np.array([[ref_flags.sum(), (~ref_flags).sum()], [cur_flags.sum(), (~cur_flags).sum()]])
        if (table.sum(axis=0) == 0).any():
            chi2, p = 0.0, 1.0  # every row on both sides has (or lacks) an OOV word: nothing differs
        else:
            res = stats.chi2_contingency(table)
            chi2, p = float(res.statistic), float(res.pvalue)
        return {
            "test": "chi2",
            "statistic": chi2,
            "p_value": p,
            "reference_share": float(ref_flags.mean()),
            "current_share": float(cur_flags.mean()),
            "reference_oov_rate": ref_rate,
            "current_oov_rate": cur_rate,
            "vocabulary_size": len(vocab),
        }

    @staticmethod
    def _describe(name: str, t: dict) -> str:
        if name == "oov_rows":
            return (
                f"rows with out-of-vocabulary words {t['reference_share']:.0%} -> {t['current_share']:.0%} "
                f"(p={t['p_adjusted']:.3g})"
            )
        return (
            f"{name} mean {t['reference_mean']:.1f} -> {t['current_mean']:.1f} "
            f"(PSI {t['psi']:.2f}, p={t['p_adjusted']:.3g})"
        )


register_detector(name="text_stats", detector_cls=TextStats)
