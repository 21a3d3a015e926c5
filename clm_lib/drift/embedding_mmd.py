"""Data drift on text: maximum mean discrepancy between prompt representations, with a permutation test.

Two views of the prompts, each tested with an RBF-kernel MMD permutation test, Holm-corrected together:

- ``sentence``: all-MiniLM-L6-v2 embeddings of a seeded subsample of ``sample_size`` prompts per side (MiniLM
  embeds ~50-150 prompts/s on two CPU cores; reference embeddings are cached between checks);
- ``hashed``: hashed word 1-2-grams of ``hashed_sample_size`` prompts per side (no model, milliseconds).

Why both: sentence embeddings place "my EV charger won't turn on" next to "my router won't turn on" (same
meaning), so a new product line written in the old symptoms' words moves them little; n-grams see the new
words at once. In ``bench/drift.py`` at alpha 0.02, 20 % of prompts from an unseen product line was caught in 9
of 20 checks by MiniLM at 200 prompts per side (20/20 at 400) and in 20/20 by hashed n-grams at 1,000. MiniLM
stays for shifts of meaning in familiar words. Without the model, the hashed view runs alone and the result is
"degraded: using fallback". Each test is exact under the null (permutations of the pooled sample), so the
false-alarm rate is ``alpha`` at any window size.
"""

from __future__ import annotations

from typing import Any

from clm_lib.drift.base import Detector, DriftContext, DriftResult, Status, register_detector
from clm_lib.drift.config import EmbeddingMMDSettings
from clm_lib.drift.representation import HashedNgrams, Representation, get_representation
from clm_lib.drift.stats import holm, mmd_permutation_test
from clm_lib.drift.window import TextWindow


class EmbeddingMMD(Detector):
    settings_type = EmbeddingMMDSettings
    settings: EmbeddingMMDSettings

    def _views(self, context: DriftContext) -> tuple[list[Representation], str | None]:
        s = self.settings
        views: list[Representation] = []
        fallback = None
        if "sentence" in s.views:
            if context.embedder is not None:
                views.append(context.embedder)
            else:
                rep, fallback = get_representation("sentence", s.model_path, s.threads)
                if fallback is None:
                    views.append(rep)
        if "hashed" in s.views or fallback:
            views.append(HashedNgrams())
        return views, fallback

    def _check(self, reference: TextWindow, current: TextWindow, context: DriftContext) -> DriftResult:
        s = self.settings
        dropped = reference.missing_prompts + current.missing_prompts
        reference, current = reference.usable(), current.usable()
        if min(len(reference), len(current)) < s.min_samples:
            return self.insufficient(
                f"{len(reference)} reference and {len(current)} current rows have a prompt ({dropped} without); "
                f"at least {s.min_samples} per side are needed",
                n_reference=len(reference),
                n_current=len(current),
            )
        views, fallback = self._views(context)
        tests: dict[str, dict[str, Any]] = {}
        for rep in views:
            size = s.hashed_sample_size if rep.cheap else s.sample_size
            # One subsample per side and size: both views of the same size look at the same prompts.
            ref = reference.sample(size, self.rng(f"reference-{size}"))
            cur = current.sample(size, self.rng(f"current-{size}"))
            x, y = rep.embed_pair(ref.prompts.tolist(), cur.prompts.tolist(), context.cache_dir)
            mmd2, p_value, bandwidth = mmd_permutation_test(x, y, s.permutations, self.rng(f"permutations-{rep.name}"))
            tests[rep.name] = {"mmd2": mmd2, "p_value": p_value, "bandwidth": bandwidth, "n_reference": len(ref),
                               "n_current": len(cur)}
        names = list(tests)
        for name, adjusted in zip(names, holm([tests[n]["p_value"] for n in names]), strict=True):
            tests[name]["p_adjusted"] = adjusted
            tests[name]["drift"] = adjusted < s.alpha
        moved = [n for n in names if tests[n]["drift"]]
        best = min(names, key=lambda n: tests[n]["p_adjusted"])
        shown = ", ".join(
            f"{n} MMD² {tests[n]['mmd2']:.4f} p={tests[n]['p_adjusted']:.3f} "
            f"({tests[n]['n_reference']} vs {tests[n]['n_current']})"
            for n in names
        )
        head = f"the prompts moved ({', '.join(moved)})" if moved else "no evidence the prompts moved"
        explanation = f"{head}: {shown}; Holm-corrected permutation tests, alpha {s.alpha}"
        if fallback:
            explanation += f"; {fallback}"
        if dropped:
            explanation += f"; {dropped} rows without a prompt left out"
        return self.result(
            Status.DEGRADED if fallback else Status.OK,
            bool(moved),
            explanation,
            statistic=tests[best]["mmd2"],
            p_value=tests[best]["p_adjusted"],
            threshold=s.alpha,
            n_reference=tests[best]["n_reference"],
            n_current=tests[best]["n_current"],
            details={
                "views": tests,
                "representation": views[0].name,
                "fallback_reason": fallback,
                "permutations": s.permutations,
                "rows_without_prompt": dropped,
            },
        )


register_detector(name="embedding_mmd", detector_cls=EmbeddingMMD)
