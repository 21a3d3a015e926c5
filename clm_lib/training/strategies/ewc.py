"""Online elastic weight consolidation: a quadratic pull towards the parameters earlier updates found important.

EWC (Kirkpatrick et al., 2017) weighs each parameter by the diagonal Fisher information of the data it was
learnt on; the online form (Schwarz et al., 2018, "Progress & Compress") keeps one running Fisher, decayed at
each update, instead of one penalty per task. The Fisher travels with the adapter (``clm_strategies/ewc``), so
the next update, wherever it runs, continues from it.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import load_file, save_file

from clm_lib.errors import TrainingError
from clm_lib.training.context import STRATEGY_STATE_DIR
from clm_lib.training.data import IGNORE_INDEX, Example, collate
from clm_lib.training.strategies import register_strategy
from clm_lib.training.strategies.base import Strategy

if TYPE_CHECKING:
    from clm_lib.config import ClmConfig
    from clm_lib.training.context import TrainContext
    from clm_lib.training.strategy_config import EwcConfig

log = logging.getLogger(__name__)

FISHER_FILE = "fisher.safetensors"
META_FILE = "ewc.json"


class EWC(Strategy):
    """Add ``strength/2 * sum_i F_i (theta_i - theta*_i)^2`` to the loss; accumulate ``F`` after training.

    Parameters: ``training.ewc`` (:class:`~clm_lib.training.strategy_config.EwcConfig`): ``strength``, ``decay``,
    ``fisher_examples``, ``normalize``.

    * ``theta*`` is where this update starts (the parent adapter) and ``F`` the accumulated Fisher saved with the
      parent. The first update, or one whose parent trained without EWC, has no ``F`` and no penalty.
    * After training, this update's diagonal Fisher is the mean over ``fisher_examples`` examples (new and
      replayed) of the squared gradient of each example's own response log-likelihood, taken one example at a
      time: the squared gradient of a batch would be the square of a mean, not the mean of squares. It is
      normalized, then ``F_acc = decay * F + F_new`` is saved for the next update.
    * Only parameters trainable in this update are pulled (frozen ones cannot move); the Fisher of the others is
      carried on, decayed, for updates that train them again.
    """

    def __init__(self, settings: EwcConfig, seed: int = 0) -> None:
        self.settings = settings
        self.seed = seed
        self.prior: dict[str, torch.Tensor] = {}
        """Accumulated Fisher of earlier updates (the penalty's weights)."""
        self.anchor: dict[str, torch.Tensor] = {}
        self.accumulated: dict[str, torch.Tensor] | None = None
        """``decay * prior + F_new``, once this update's Fisher is computed."""
        self.prior_updates = 0
        self.fisher_raw_mean: float | None = None
        self.last_penalty: float | None = None
        self._pulled: list[tuple[torch.nn.Parameter, torch.Tensor, torch.Tensor]] = []
        self._params: dict[str, torch.nn.Parameter] = {}

    @classmethod
    def from_config(cls, cfg: ClmConfig) -> EWC | None:
        return cls(cfg.training.ewc, cfg.training.seed) if cfg.training.ewc.enabled else None

    def params(self) -> dict[str, Any]:
        return {
            "strength": self.settings.strength,
            "decay": self.settings.decay,
            "normalize": self.settings.normalize,
            "fisher_examples": self.settings.fisher_examples,
            "prior_updates": self.prior_updates,
            "pulled_parameters": len(self._pulled),
            "fisher_raw_mean": self.fisher_raw_mean,
            "last_penalty": self.last_penalty,
        }

    # --- hooks ----------------------------------------------------------------------------------------------

    def before_training(self, ctx: TrainContext) -> None:
        self._params = {n: p for n, p in ctx.model.named_parameters() if p.requires_grad}
        self.anchor = {n: p.detach().clone() for n, p in self._params.items()}
        self.prior, self.prior_updates = {}, 0
        state = ctx.parent_adapter_dir and _state_dir(ctx.parent_adapter_dir)
        if state and (state / FISHER_FILE).exists():
            self.prior = load_file(str(state / FISHER_FILE), device=str(ctx.device))
            meta = json.loads((state / META_FILE).read_text()) if (state / META_FILE).exists() else {}
            self.prior_updates = int(meta.get("updates", 1))
        elif ctx.parent_adapter_dir is not None:
            log.info("the parent adapter carries no EWC state: no penalty in this update")
        self._bind()

    def extra_loss(self, ctx: TrainContext, batch, outputs) -> torch.Tensor | None:
        if not self._pulled or self.settings.strength == 0:
            return None
        penalty = sum((f * (p - a).pow(2)).sum() for p, f, a in self._pulled)
        self.last_penalty = round(penalty.item(), 6)
        return 0.5 * self.settings.strength * penalty

    def after_training(self, ctx: TrainContext) -> None:
        rng = random.Random(self.seed)
        pool = list(ctx.data.get("new", [])) + list(ctx.data.get("replay", []))
        sample = rng.sample(pool, min(self.settings.fisher_examples, len(pool)))
        raw = empirical_fisher(ctx.model, sample, ctx.pad_id, ctx.device)
        self.fisher_raw_mean = _mean(raw)
        fresh = normalize(raw, self.settings.normalize)
        decay = self.settings.decay
        self.accumulated = {n: decay * f for n, f in self.prior.items()}
        for n, f in fresh.items():
            self.accumulated[n] = self.accumulated[n] + f if n in self.accumulated else f
        log.info("EWC: Fisher of %d examples, raw mean %.3g", len(sample), self.fisher_raw_mean)

    def after_save(self, ctx: TrainContext, state_dir: Path) -> None:
        if self.accumulated is None:
            raise TrainingError("EWC: the adapter is saved before training finished; no Fisher to save")
        save_file({n: f.contiguous().cpu() for n, f in self.accumulated.items()}, str(state_dir / FISHER_FILE))
        meta = {
            "updates": self.prior_updates + 1,
            "decay": self.settings.decay,
            "normalize": self.settings.normalize,
            "fisher_raw_mean": self.fisher_raw_mean,
        }
        (state_dir / META_FILE).write_text(json.dumps(meta, indent=2))

    def state_dict(self) -> dict[str, Any]:
        return {"anchor": dict(self.anchor), "prior": dict(self.prior), "prior_updates": self.prior_updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            return
        self.anchor, self.prior = dict(state["anchor"]), dict(state["prior"])
        self.prior_updates = int(state["prior_updates"])
        self._bind()

    def _bind(self) -> None:
        """Pair each trainable parameter that has a Fisher with its Fisher and anchor."""
        self._pulled = []
        for n, f in self.prior.items():
            p = self._params.get(n)
            if p is None:
                continue
            if f.shape != p.shape:
                raise TrainingError(
                    f"EWC: the saved Fisher of {n} has shape {tuple(f.shape)}, the parameter {tuple(p.shape)}; "
                    "the adapter changed shape (training.lora), so its EWC state no longer applies"
                )
            self._pulled.append((p, f.to(p.device), self.anchor[n].to(p.device)))


def _state_dir(adapter_dir: Path) -> Path:
    return Path(adapter_dir) / STRATEGY_STATE_DIR / EWC.name


def response_log_likelihood(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Sum of the log-probabilities of the labelled tokens (``labels != IGNORE_INDEX``), per sequence."""
    logits, labels = logits[:, :-1], labels[:, 1:]
    mask = labels != IGNORE_INDEX
    logp = torch.log_softmax(logits.float(), dim=-1).gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (logp * mask).sum(dim=-1)


def empirical_fisher(
    model: torch.nn.Module, examples: Sequence[Example], pad_id: int, device: torch.device | str
) -> dict[str, torch.Tensor]:
    """Diagonal empirical Fisher of the trainable parameters: mean over examples of the squared gradient of each
    example's response log-likelihood. One example per backward pass (``torch.func.vmap`` cannot trace the
    data-dependent mask code of ``transformers`` models); dropout is off while it runs."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not examples or not named:
        return {}
    squares = [torch.zeros_like(p, dtype=torch.float32) for _, p in named]
    was_training = model.training
    model.eval()
    try:
        for ex in examples:
            inputs = collate([ex], pad_id, device)
            logits = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits
            ll = response_log_likelihood(logits, inputs["labels"]).sum()
            grads = torch.autograd.grad(ll, [p for _, p in named], allow_unused=True)
            for sq, g in zip(squares, grads, strict=True):
                if g is not None:
                    sq.add_(g.detach().float().pow(2))
    finally:
        model.train(was_training)
    return {n: sq / len(examples) for (n, _), sq in zip(named, squares, strict=True)}


def _mean(fisher: dict[str, torch.Tensor]) -> float:
    numel = sum(f.numel() for f in fisher.values())
    return float(sum(f.sum() for f in fisher.values()) / numel) if numel else 0.0


def normalize(fisher: dict[str, torch.Tensor], how: str) -> dict[str, torch.Tensor]:
    """Scale a Fisher so that its mean (``mean``) or largest entry (``max``) is 1; ``none`` leaves it."""
    if how == "none" or not fisher:
        return dict(fisher)
    scale = _mean(fisher) if how == "mean" else max(float(f.max()) for f in fisher.values())
    if scale <= 0:
        log.warning("EWC: the Fisher is zero everywhere (no gradient reached the trainable parameters)")
        return dict(fisher)
    return {n: f / scale for n, f in fisher.items()}


register_strategy(name="ewc", strategy_cls=EWC)
