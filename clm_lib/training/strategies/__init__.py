"""Continual-learning strategies: plugins on the one training loop (the shape of Avalanche's plugins).

A strategy subclasses :class:`Strategy`, overrides the hooks it needs, and registers itself with
``@register_strategy("name")``. Its parameters are a config section, documented once, field by field, in
``clm_lib/training/strategy_config.py``; its class docstring names that section and says how it works.
``from_config`` decides from the clm config whether it takes part in a run. The loop calls the hooks in this order::

    before_training(ctx)
    for each step:
        batch = before_batch(ctx, batch) or batch     # change what is trained on
        loss = outputs.loss + sum(extra_loss(...))     # add a penalty (EWC, distillation)
        after_step(ctx)
    after_training(ctx)
    after_save(ctx, state_dir)                         # persist what the next update needs, with the adapter

State that must survive a restart goes in ``state_dict``/``load_state_dict``; it is saved with each checkpoint.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

if TYPE_CHECKING:
    from pathlib import Path

    import torch

    from clm_lib.config import ClmConfig
    from clm_lib.training.data import Batch
    from clm_lib.training.loop import TrainContext


class Strategy:
    """Base class: every hook does nothing."""

    name: ClassVar[str] = ""

    @classmethod
    def from_config(cls, cfg: ClmConfig) -> Strategy | None:
        """The strategy configured by ``cfg``, or ``None`` when it is switched off."""
        raise NotImplementedError

    def params(self) -> dict[str, Any]:
        """Its parameters, recorded with the run."""
        return {}

    def before_training(self, ctx: TrainContext) -> None:
        pass

    def before_batch(self, ctx: TrainContext, batch: Batch) -> Batch | None:
        return None

    def extra_loss(self, ctx: TrainContext, batch: Batch, outputs: Any) -> torch.Tensor | None:
        return None

    def after_step(self, ctx: TrainContext) -> None:
        pass

    def after_training(self, ctx: TrainContext) -> None:
        pass

    def after_save(self, ctx: TrainContext, state_dir: Path) -> None:
        """Write state the next update continues from into ``state_dir`` (``<adapter>/clm_strategies/<name>``).

        It travels with the adapter (into MLflow too); the next update finds it under ``ctx.parent_adapter_dir``.
        """

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


_REGISTRY: dict[str, type[Strategy]] = {}
S = TypeVar("S", bound=type[Strategy])


def register_strategy(name: str):
    """Class decorator: make a strategy available to :func:`build_strategies` under ``name``."""

    def register(cls: S) -> S:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"strategy {name!r} is already registered by {_REGISTRY[name].__qualname__}")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return register


def registered_strategies() -> dict[str, type[Strategy]]:
    return dict(_REGISTRY)


def build_strategies(cfg: ClmConfig) -> list[Strategy]:
    """The strategies ``cfg`` switches on, in registration order (which is also hook order)."""
    built = (cls.from_config(cfg) for cls in _REGISTRY.values())
    return [s for s in built if s is not None]


# Built-in strategies register themselves on import, and this order is their hook order: freezing first, so that
# the others see only what stays trainable (EWC anchors and weighs exactly those parameters).
BUILTIN = ("freezing", "replay", "ewc", "distillation", "orthogonality")
for _module in BUILTIN:
    importlib.import_module(f"{__name__}.{_module}")
