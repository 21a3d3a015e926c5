"""Distillation from the previous champion: keep answering the way the model being continued answered.

Learning without Forgetting (Li & Hoiem, 2016) with Hinton et al.'s (2015) temperature-scaled KL: the teacher
is the base model with the parent adapter, frozen; the student is the adapter being trained. The term is taken on
the response tokens of every example in the batch, new and replayed.
"""

from __future__ import annotations

import gc
import logging
from typing import TYPE_CHECKING, Any

import torch

from clm_lib.training.data import IGNORE_INDEX
from clm_lib.training.strategies import register_strategy
from clm_lib.training.strategies.base import Strategy

if TYPE_CHECKING:
    from clm_lib.config import ClmConfig
    from clm_lib.training.context import TrainContext
    from clm_lib.training.data import Batch
    from clm_lib.training.strategy_config import DistillationConfig

log = logging.getLogger(__name__)


class Distillation(Strategy):
    """Add ``weight * T^2 * KL(teacher_T || student_T)`` over response-token positions to the loss.

    Parameters: ``training.distillation`` (:class:`~clm_lib.training.strategy_config.DistillationConfig`):
    ``weight``, ``temperature``, ``top_k``.

    The teacher (base model + ``ctx.parent_adapter_dir``) is loaded in ``before_training`` in eval mode with no
    gradients, runs one extra forward pass per step, and is released after training; it costs a second copy of
    the base model in memory. An update without a parent (the first one) has no teacher and adds nothing.
    """

    def __init__(self, settings: DistillationConfig) -> None:
        self.settings = settings
        self.teacher: torch.nn.Module | None = None
        self.has_teacher = False
        self.last_loss: float | None = None

    @classmethod
    def from_config(cls, cfg: ClmConfig) -> Distillation | None:
        return cls(cfg.training.distillation) if cfg.training.distillation.enabled else None

    def params(self) -> dict[str, Any]:
        return {
            "weight": self.settings.weight,
            "temperature": self.settings.temperature,
            "top_k": self.settings.top_k,
            "teacher": self.has_teacher,
            "last_loss": self.last_loss,
        }

    def before_training(self, ctx: TrainContext) -> None:
        if ctx.parent_adapter_dir is None or ctx.base_dir is None:
            log.info("no previous model to distil from: distillation is skipped in this update")
            return
        from clm_lib.modeling.load import load_model

        teacher, _ = load_model(ctx.base_dir, ctx.parent_adapter_dir, ctx.device)
        teacher.eval().requires_grad_(False)
        self.teacher, self.has_teacher = teacher, True

    def extra_loss(self, ctx: TrainContext, batch: Batch, outputs: Any) -> torch.Tensor | None:
        if self.teacher is None or self.settings.weight == 0:
            return None
        with torch.no_grad():
            teacher_logits = self.teacher(
                input_ids=batch.inputs["input_ids"], attention_mask=batch.inputs["attention_mask"]
            ).logits
        loss = distillation_loss(
            outputs.logits, teacher_logits, batch.inputs["labels"], self.settings.temperature, self.settings.top_k
        )
        self.last_loss = round(loss.item(), 6)
        return self.settings.weight * loss

    def after_training(self, ctx: TrainContext) -> None:
        self.teacher = None
        gc.collect()


def distillation_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor, temperature: float, top_k: int = 0
) -> torch.Tensor:
    """``T^2 * KL(p_teacher || p_student)`` at temperature ``T``, averaged over the positions that predict a
    labelled token (logits at ``t`` predict ``labels[t + 1]``, as in the language-model loss).

    With ``top_k > 0`` both distributions are reduced to the teacher's ``k`` most likely tokens plus one bucket
    for the rest of the vocabulary. That is still an exact KL (between coarser distributions), so it is zero when
    student and teacher agree and positive otherwise, while only ``k + 1`` teacher values per position are kept.
    """
    mask = labels[:, 1:] != IGNORE_INDEX
    if not mask.any():
        return student_logits.sum() * 0.0
    student = student_logits[:, :-1][mask].float() / temperature
    teacher = teacher_logits[:, :-1][mask].float() / temperature
    log_q = torch.log_softmax(student, dim=-1)
    log_p = torch.log_softmax(teacher, dim=-1)
    if top_k and top_k < teacher.shape[-1]:
        top_p, index = log_p.topk(top_k, dim=-1)
        log_p = _with_rest(top_p)
        log_q = _with_rest(log_q.gather(-1, index))
    kl = (log_p.exp() * (log_p - log_q)).sum(dim=-1)
    return kl.mean() * temperature**2


def _with_rest(log_top: torch.Tensor) -> torch.Tensor:
    """Append ``log(1 - sum(exp(log_top)))``, the log-probability of every token outside the top k."""
    rest = torch.log1p(-log_top.exp().sum(dim=-1, keepdim=True).clamp(max=1 - 1e-6))
    return torch.cat([log_top, rest], dim=-1)


register_strategy(name="distillation", strategy_cls=Distillation)
