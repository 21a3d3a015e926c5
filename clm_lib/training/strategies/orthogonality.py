"""O-LoRA: an orthogonality penalty between per-task adapters (Wang et al., 2023, "Orthogonal Subspace Learning for
Language Model Continual Learning").

Only with per-task adapters (``training.adapters.mode: per_task``), where the loop runs each task's share of a
batch through its own adapter and tells strategies which one (``ctx.active_task``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from clm_lib.training.strategies import register_strategy
from clm_lib.training.strategies.base import Strategy

if TYPE_CHECKING:
    from clm_lib.config import ClmConfig
    from clm_lib.training.context import TrainContext
    from clm_lib.training.data import Batch


def orthogonality_penalty(model, adapter: str, others: Sequence[str]) -> torch.Tensor:
    """Sum over LoRA layers and over ``others`` of ``||A_adapter A_other^T||_F^2`` (others held constant).

    The rows of a LoRA ``A`` span the input subspace an adapter reads; the penalty is zero exactly when that
    subspace is orthogonal to every other adapter's, in every layer (Wang et al., 2023, "O-LoRA").
    """
    from peft.tuners.lora import LoraLayer

    total = None
    for module in model.modules():
        if not isinstance(module, LoraLayer) or adapter not in module.lora_A:
            continue
        a = module.lora_A[adapter].weight
        for other in others:
            if other != adapter and other in module.lora_A:
                term = (a @ module.lora_A[other].weight.detach().T).pow(2).sum()
                total = term if total is None else total + term
    if total is None:
        return torch.zeros((), device=next(model.parameters()).device)
    return total


class Orthogonality(Strategy):
    """O-LoRA: keep the adapter being trained in a subspace orthogonal to the other tasks' adapters.

    Parameter: ``training.adapters.orthogonality`` -- weight of :func:`orthogonality_penalty` added to the loss of
    each task's share of the batch (0 switches the strategy off). Only with ``training.adapters.mode: per_task``.
    """

    def __init__(self, weight: float) -> None:
        self.weight = weight
        self.last_penalty: float | None = None

    @classmethod
    def from_config(cls, cfg: ClmConfig) -> Orthogonality | None:
        adapters = cfg.training.adapters
        return cls(adapters.orthogonality) if adapters.mode == "per_task" and adapters.orthogonality > 0 else None

    def params(self) -> dict[str, Any]:
        return {"weight": self.weight, "last_penalty": self.last_penalty}

    def extra_loss(self, ctx: TrainContext, batch: Batch, outputs: Any) -> torch.Tensor | None:
        if ctx.adapters is None or ctx.active_task is None:
            return None
        names = ctx.adapters.names
        penalty = orthogonality_penalty(ctx.model, names[ctx.active_task], list(names.values()))
        self.last_penalty = float(penalty.detach())
        return self.weight * penalty


register_strategy(name="orthogonality", strategy_cls=Orthogonality)
