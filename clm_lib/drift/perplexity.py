"""Model-based drift: is the champion more surprised by the new prompts than by the ones it was trained on?

Each side is subsampled (seeded) to ``sample_size`` prompts and scored with ``context.nll_fn`` (mean negative
log-likelihood per token of each prompt). A one-sided Mann-Whitney U test asks whether new prompts have
stochastically higher NLL; it fires when that holds at ``alpha`` and perplexity grew by at least ``min_ratio``.
Build ``nll_fn`` from any causal LM with :func:`nll_fn_from_model`, or pass another callable (tests, other
serving stacks).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
from scipy import stats

from clm_lib.drift.base import Detector, DriftContext, DriftResult, Status, register_detector
from clm_lib.drift.config import PerplexitySettings
from clm_lib.drift.window import TextWindow


def nll_fn_from_model(
    model, tokenizer, *, batch_size: int = 32, max_length: int = 128
) -> Callable[[Sequence[str]], np.ndarray]:
    """A callable: texts -> mean NLL per predicted token of each text under ``model`` (NaN for an empty text)."""
    import torch
    import torch.nn.functional as F

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    bos = getattr(tokenizer, "bos_token", None) or ""

    @torch.inference_mode()
    def nll(texts: Sequence[str]) -> np.ndarray:
        device = next(model.parameters()).device
        was_training = model.training
        model.eval()
        out = np.full(len(texts), np.nan)
        encoded = tokenizer([bos + t for t in texts], add_special_tokens=False, truncation=True,
                            max_length=max_length)["input_ids"]
        order = sorted(range(len(texts)), key=lambda i: len(encoded[i]))  # less padding per batch
        for start in range(0, len(order), batch_size):
            rows = [i for i in order[start : start + batch_size] if len(encoded[i]) >= 2]
            if not rows:
                continue
            width = max(len(encoded[i]) for i in rows)
            ids = torch.full((len(rows), width), pad, dtype=torch.long)
            mask = torch.zeros((len(rows), width), dtype=torch.long)
            for j, i in enumerate(rows):
                ids[j, : len(encoded[i])] = torch.tensor(encoded[i])
                mask[j, : len(encoded[i])] = 1
            ids, mask = ids.to(device), mask.to(device)
            logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
            target, keep = ids[:, 1:], mask[:, 1:].bool()
            loss = F.cross_entropy(logits.transpose(1, 2), target, reduction="none") * keep
            per_row = (loss.sum(1) / keep.sum(1)).cpu().numpy()
            out[rows] = per_row
        model.train(was_training)
        return out

    return nll


class Perplexity(Detector):
    settings_type = PerplexitySettings
    settings: PerplexitySettings

    def _check(self, reference: TextWindow, current: TextWindow, context: DriftContext) -> DriftResult:
        s = self.settings
        if context.nll_fn is None:
            return self.insufficient("no champion model to score with yet (context.nll_fn is not set)")
        ref = reference.usable().sample(s.sample_size, self.rng("reference"))
        cur = current.usable().sample(s.sample_size, self.rng("current"))
        a = np.asarray(context.nll_fn(ref.prompts.tolist()), dtype=float)
        b = np.asarray(context.nll_fn(cur.prompts.tolist()), dtype=float)
        a, b = a[np.isfinite(a)], b[np.isfinite(b)]
        if min(len(a), len(b)) < s.min_samples:
            return self.insufficient(
                f"{len(a)} reference and {len(b)} current prompts could be scored; at least {s.min_samples} "
                "per side are needed",
                n_reference=len(a),
                n_current=len(b),
            )
        test = stats.mannwhitneyu(b, a, alternative="greater")
        ppl_ref, ppl_cur = math.exp(a.mean()), math.exp(b.mean())
        ratio = ppl_cur / ppl_ref
        drift = bool(test.pvalue < s.alpha and ratio >= s.min_ratio)
        head = "the champion finds the new prompts harder" if drift else "no evidence the new prompts are harder"
        explanation = (
            f"{head}: perplexity {ppl_ref:.2f} -> {ppl_cur:.2f} (x{ratio:.2f}, floor x{s.min_ratio}), "
            f"one-sided Mann-Whitney p={test.pvalue:.3g} (alpha {s.alpha}, {len(a)} vs {len(b)} prompts)"
        )
        return self.result(
            Status.OK,
            drift,
            explanation,
            statistic=ratio,
            p_value=float(test.pvalue),
            threshold=s.alpha,
            n_reference=len(a),
            n_current=len(b),
            details={
                "reference_perplexity": ppl_ref,
                "current_perplexity": ppl_cur,
                "ratio": ratio,
                "min_ratio": s.min_ratio,
                "champion_version": context.champion_version,
            },
        )


register_detector(name="perplexity", detector_cls=Perplexity)
