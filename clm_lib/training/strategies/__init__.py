"""Continual-learning strategies: one shape (:class:`~clm_lib.training.strategies.base.Strategy`), one registry.

A strategy registers at the bottom of its module with ``register_strategy(name=..., strategy_cls=...)`` (the idiom
of :mod:`clm_lib.plugins`); the built-in ones (``freezing``, ``replay``, ``ewc``, ``distillation``,
``orthogonality``) live one per module and are imported on first use. The hooks and their order are documented
on the shape, in :mod:`clm_lib.training.strategies.base`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from clm_lib.plugins import Registry
from clm_lib.training.strategies.base import Strategy

if TYPE_CHECKING:
    from clm_lib.config import ClmConfig

__all__ = ["STRATEGIES", "Strategy", "build_strategies", "register_strategy", "registered_strategies"]

STRATEGIES: Registry[Strategy] = Registry(
    "strategy",
    Strategy,
    # The order of the built-ins is their hook order: freezing first, so that the others see only what stays
    # trainable (EWC anchors and weighs exactly those parameters). Plugins run after them.
    {name: f"{__name__}.{name}" for name in ("freezing", "replay", "ewc", "distillation", "orthogonality")},
)


def register_strategy(*, name: str, strategy_cls: type[Strategy]) -> None:
    """Make ``strategy_cls`` available to :func:`build_strategies` under ``name``."""
    STRATEGIES.register(name, strategy_cls)


def registered_strategies() -> dict[str, type[Strategy]]:
    """Every strategy class by name, in hook order."""
    return STRATEGIES.classes()


def build_strategies(cfg: ClmConfig) -> list[Strategy]:
    """The strategies ``cfg`` switches on, in hook order."""
    built = (cls.from_config(cfg) for cls in STRATEGIES.classes().values())
    return [s for s in built if s is not None]
