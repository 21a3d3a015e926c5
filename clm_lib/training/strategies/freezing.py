"""Layer freezing: leave chosen trainable parameters (embeddings, the lowest blocks, any name pattern) unchanged.

Lower blocks hold the general features every task shares; freezing them trades plasticity for stability
(Lee et al., 2019; the "freeze the bottom" baseline of many continual fine-tuning studies).
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any

import torch

from clm_lib.errors import TrainingError
from clm_lib.training.strategies import register_strategy
from clm_lib.training.strategies.base import Strategy

if TYPE_CHECKING:
    from clm_lib.config import ClmConfig
    from clm_lib.training.context import TrainContext
    from clm_lib.training.strategy_config import FreezeConfig

log = logging.getLogger(__name__)

FIELD = "training.freeze"
_ADAPTER_SUFFIX = re.compile(r"\.(lora_[A-Za-z_]+|base_layer)(\.[^.]+)?\.(weight|bias)$")
"""What PEFT appends to a module's name: removed when frozen parameters are reported per module."""


class Freezing(Strategy):
    """Freeze trainable parameters before the first step; the optimizer then never touches them.

    Parameters: ``training.freeze`` (:class:`~clm_lib.training.strategy_config.FreezeConfig`): ``embeddings``,
    ``lowest_blocks``, ``patterns``. Built only when one of them asks for something.

    Frozen parameters get ``requires_grad=False`` (no gradient is computed for them) and leave the optimizer's
    parameter groups, because the optimizer is built before the hooks run: that also keeps weight decay and any
    moment an optimizer might keep off them. ``params()`` reports what was frozen, per module, for the run record.
    """

    def __init__(self, settings: FreezeConfig) -> None:
        self.settings = settings
        self.frozen: list[str] = []
        self.frozen_numel = 0
        self.trainable_numel = 0

    @classmethod
    def from_config(cls, cfg: ClmConfig) -> Freezing | None:
        return cls(cfg.training.freeze) if cfg.training.freeze.active else None

    def params(self) -> dict[str, Any]:
        modules = list(dict.fromkeys(_ADAPTER_SUFFIX.sub("", n) for n in self.frozen))
        return {
            "embeddings": self.settings.embeddings,
            "lowest_blocks": self.settings.lowest_blocks,
            "patterns": list(self.settings.patterns),
            "frozen_parameters": len(self.frozen),
            "frozen_numel": self.frozen_numel,
            "trainable_numel": self.trainable_numel,
            "frozen_modules": modules,
        }

    def before_training(self, ctx: TrainContext) -> None:
        trainable = {n: p for n, p in ctx.model.named_parameters() if p.requires_grad}
        names = self.select(ctx.model, list(trainable))
        if len(names) == len(trainable):
            raise TrainingError(f"{FIELD} freezes every trainable parameter ({len(names)}); nothing would be trained")
        frozen_ids = set()
        for n in names:
            trainable[n].requires_grad_(False)
            trainable[n].grad = None
            frozen_ids.add(id(trainable[n]))
        for group in ctx.optimizer.param_groups:
            group["params"] = [p for p in group["params"] if id(p) not in frozen_ids]
        for p in [p for p in ctx.optimizer.state if id(p) in frozen_ids]:
            del ctx.optimizer.state[p]
        self.frozen = names
        self.frozen_numel = sum(trainable[n].numel() for n in names)
        self.trainable_numel = sum(p.numel() for p in trainable.values() if p.requires_grad)
        log.info("froze %d of %d trainable tensors (%d values)", len(names), len(trainable), self.frozen_numel)

    def select(self, model: torch.nn.Module, trainable: list[str]) -> list[str]:
        """The trainable parameter names to freeze, in model order; raises when a setting cannot apply."""
        s = self.settings
        chosen: set[str] = set()
        if s.embeddings:
            prefixes = _module_names(model, model.get_input_embeddings())
            hits = [n for n in trainable if any(n.startswith(f"{p}.") for p in prefixes)]
            if not hits:
                log.info("%s.embeddings: the input embeddings have no trainable parameters here", FIELD)
            chosen.update(hits)
        if s.lowest_blocks:
            blocks = _blocks(model)
            if s.lowest_blocks > len(blocks):
                raise TrainingError(
                    f"{FIELD}.lowest_blocks is {s.lowest_blocks} but the model has {len(blocks)} blocks"
                )
            prefixes = [f"{b}." for b in blocks[: s.lowest_blocks]]
            chosen.update(n for n in trainable if n.startswith(tuple(prefixes)))
        for pattern in s.patterns:
            hits = [n for n in trainable if re.search(pattern, n)]
            if not hits:
                example = trainable[0] if trainable else "(none)"
                raise TrainingError(
                    f"{FIELD}.patterns: {pattern!r} matches no trainable parameter (names look like {example!r})"
                )
            chosen.update(hits)
        return [n for n in trainable if n in chosen]


def _module_names(model: torch.nn.Module, target: torch.nn.Module) -> list[str]:
    return [name for name, module in model.named_modules() if module is target]


def _blocks(model: torch.nn.Module) -> list[str]:
    """Names of the transformer blocks, lowest first: the outermost ``ModuleList`` with ``config.num_hidden_layers``
    entries (``layers`` in Llama, ``h`` in GPT-2), or the longest one when the model does not say."""
    lists = [(name, len(m)) for name, m in model.named_modules() if isinstance(m, torch.nn.ModuleList) and len(m)]
    expected = getattr(getattr(model, "config", None), "num_hidden_layers", None)
    if isinstance(expected, int):
        lists = [(name, n) for name, n in lists if n == expected]
    if not lists:
        raise TrainingError(f"{FIELD}.lowest_blocks: cannot find the model's list of blocks")
    name, n = lists[0] if isinstance(expected, int) else max(lists, key=lambda nm: nm[1])
    return [f"{name}.{i}" for i in range(n)]


register_strategy(name="freezing", strategy_cls=Freezing)
