"""What the training code hands to the strategies' hooks: plain dataclasses, no behaviour.

- :class:`TrainContext`: what one training run shares between the loop, DeepSpeed and the strategies;
- :class:`UpdateContext`: what the strategies see of one scheduled update (:mod:`clm_lib.training.update`);
- :class:`TrainResult`: what the recipe (:mod:`clm_lib.training.recipe`) returns, handed to ``after_update``.

Their own module so that the loop, the recipe and the update (which call the strategies), the strategies (whose
hooks receive these) and the DeepSpeed engine (which wraps the model) all depend on it and not on each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa
    import torch

    from clm_lib.config import ClmConfig, TrainingConfig
    from clm_lib.training.adapters import TaskAdapters
    from clm_lib.training.data import EpochSampler, Example

STRATEGY_STATE_DIR = "clm_strategies"
"""Sub-folder of a saved adapter where strategies keep what the next update needs (EWC's Fisher, a router...)."""
LOSS_WINDOW = 10
"""``final_loss`` is the mean over this many last steps: one step's loss is too noisy to compare runs."""


@dataclass
class TrainContext:
    """Everything a strategy hook may read or change."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    training: TrainingConfig
    device: torch.device
    pad_id: int
    data: dict[str, list[Example]]
    """``new``: this update's examples; ``replay``: the buffer (read by the replay strategy)."""
    step: int = 0
    """Optimizer steps done so far."""
    seen: dict[str, int] = field(default_factory=lambda: {"new": 0, "replay": 0})
    """Examples trained on, by source."""
    tokens_seen: int = 0
    losses: list[float] = field(default_factory=list)
    sampler: EpochSampler | None = None
    base_dir: Path | None = None
    """The frozen base model (a strategy may load a second copy, e.g. a distillation teacher)."""
    parent_adapter_dir: Path | None = None
    """The adapter this update continues (the champion's), or ``None`` for a fresh one. Strategies read the state
    they persisted with it from ``parent_adapter_dir / STRATEGY_STATE_DIR / <name>``."""
    adapters: TaskAdapters | None = None
    """Per-task adapters (``training.adapters.mode: per_task``), or ``None``: one adapter shared by every task."""
    active_task: str | None = None
    """With per-task adapters, the task whose examples are going through the model now (for ``extra_loss``)."""
    deepspeed: dict[str, Any] | None = None
    """The DeepSpeed config to train under (``training.deepspeed``, resolved), or ``None`` for plain PyTorch."""
    engine: Any = None
    """The DeepSpeed engine once the loop started under DeepSpeed."""
    rank: int = 0
    world_size: int = 1
    resumed_from: int | None = None
    """The step of the checkpoint this run resumed from, if it did."""

    @property
    def max_steps(self) -> int:
        return self.training.max_steps

    @property
    def final_loss(self) -> float | None:
        window = self.losses[-LOSS_WINDOW:]
        return sum(window) / len(window) if window else None


@dataclass
class UpdateContext:
    """What strategies see of one scheduled update in their ``before_update``/``after_update`` hooks."""

    cfg: ClmConfig
    run_id: str
    new: pa.Table
    """This update's new curated training rows."""
    data: dict[str, pa.Table] = field(default_factory=dict)
    """Tables strategies bring to training, by source (``replay``: the buffer)."""
    read_versions: dict[str, int | None] = field(default_factory=dict)
    """Delta table -> the version a strategy read (``replay`` becomes ``training_runs.replay_version``)."""
    pinned_versions: dict[str, int | None] = field(default_factory=dict)
    """Delta table -> the version an earlier, killed try of this same Airflow task read. A retry reads the same
    version (None: the table did not exist then), not the newest: the killed try may have written it already."""


@dataclass(frozen=True)
class TrainResult:
    """What one run of the recipe trained and where it saved the adapter."""

    adapter_dir: Path
    steps: int
    final_loss: float | None
    """Mean training loss over the last steps (see :data:`LOSS_WINDOW`)."""
    new_rows: int
    replay_rows: int
    """Rows of the replay buffer handed to this update (0 when replay is switched off)."""
    replay_fraction: float
    """Share of the examples trained on that came from the replay buffer."""
    tasks: list[str]
    """Tasks in the training data, in order of first appearance (replay buffer first)."""
    wall_seconds: float
    tokens_seen: int
    strategies: dict[str, dict[str, Any]] = field(default_factory=dict)
