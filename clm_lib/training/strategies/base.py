"""The shape of a continual-learning strategy: :class:`Strategy`, a plugin on the one training loop (Avalanche's).

A strategy subclasses :class:`Strategy`, overrides the hooks it needs, and registers itself at the bottom of its
module with ``register_strategy(name=..., strategy_cls=...)`` (:mod:`clm_lib.training.strategies`, the idiom of
:mod:`clm_lib.plugins`). Its parameters are a config section, documented once, field by field, in
``clm_lib/training/strategy_config.py``; its class docstring names that section and says how it works.
``from_config`` decides from the clm config whether it takes part in a run. The hooks run in this order::

    before_update(update)                              # run_update only: load the state it owns from clm's stores
    before_training(ctx)
    for each step:
        batch = before_batch(ctx, batch) or batch     # change what is trained on
        loss = outputs.loss + sum(extra_loss(...))     # add a penalty (EWC, distillation)
        after_step(ctx)
    after_training(ctx)
    after_save(ctx, state_dir)                         # persist what the next update needs, with the adapter
    after_update(update, result) -> record             # run_update only: persist it to clm's stores, say what it did

State that must survive a restart goes in ``state_dict``/``load_state_dict``; it is saved with each checkpoint.
A strategy owns the state it keeps between updates (replay: its buffer and its per-task weights): it reads it in
``before_update`` into its own attributes, never into the user's config, and ``run_update`` only records the
``after_update`` record with the training run (``training_runs.strategies[name]``, MLflow params).

What the hooks receive (:class:`~clm_lib.training.context.TrainContext`, ``UpdateContext``, ``TrainResult``) lives
in :mod:`clm_lib.training.context`, so that strategies depend on neither the loop nor the recipe that call them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from pathlib import Path

    import torch

    from clm_lib.config import ClmConfig
    from clm_lib.training.context import TrainContext, TrainResult, UpdateContext
    from clm_lib.training.data import Batch


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

    def before_update(self, update: UpdateContext) -> None:
        """Before an update trains (:func:`clm_lib.training.update.run_update`): read the state this strategy owns
        from clm's stores into its own attributes, put tables it brings to training into ``update.data`` and the
        Delta versions it read into ``update.read_versions``. Not called when the recipe runs alone (``clm train``,
        the benchmark): there the caller hands over data and settings."""

    def after_update(self, update: UpdateContext, result: TrainResult) -> dict[str, Any]:
        """After the update trained and its adapter was saved: write back the state the next update reads and
        return a record of what was done, merged into this strategy's ``params()`` in the training run."""
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
