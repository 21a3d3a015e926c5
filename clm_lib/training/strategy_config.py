"""Settings of the continual-learning strategies (``training.replay``, ``.ewc``, ``.distillation``, ``.freeze``).

Each parameter is documented once, here; the strategy classes in ``clm_lib.training.strategies`` point at these
sections. Kept free of torch so that loading the config stays light.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ReplayConfig(_Section):
    """Replay of past curated data, mixed into every update (Rolnick et al., 2019)."""

    enabled: bool = True
    """Turn replay off to get plain sequential fine-tuning."""
    buffer_size: int = Field(default=2000, ge=0)
    """Records kept in the Delta ``replay`` table after each update."""
    policy: Literal["task_balanced", "reservoir"] = "task_balanced"
    """How the buffer is refilled: ``task_balanced`` gives every task an equal share (a task with fewer records
    leaves the rest to the others) and samples uniformly within a task; ``reservoir`` is one uniform sample of all
    records ever offered, so tasks are represented in proportion to how much data they brought."""
    mix_ratio: float = Field(default=0.5, ge=0.0, lt=1.0)
    """Share of each training batch drawn from the buffer when every task has weight 1."""
    dynamic: bool = True
    """Weight each task's replay by how its score moved at the last evaluation: a task that fell gets more, one
    that held or improved less (see ``sensitivity``). The batch share becomes ``mix_ratio`` times the
    buffer-weighted mean weight, capped at ``max_mix_ratio``. Without two evaluations to compare every weight is
    1, which is plain replay."""
    sensitivity: float = Field(default=0.1, ge=0.0)
    """Weight change per accuracy point (0-100 scale): ``weight = 1 + sensitivity * (previous - latest score)``,
    clipped to ``[min_weight, max_weight]``. At 0.1 a task that lost 10 points is replayed twice as often."""
    min_weight: float = Field(default=0.5, ge=0.0)
    """Smallest task weight: a task that improved still keeps this share of its replay."""
    max_weight: float = Field(default=3.0, gt=0.0)
    """Largest task weight."""
    max_mix_ratio: float = Field(default=0.8, gt=0.0, lt=1.0)
    """Cap on the share of each batch drawn from the buffer once weights are applied (new data keeps the rest)."""
    task_weights: dict[str, float] = Field(default_factory=dict)
    """Replay weight per task for the next update (a task left out has 1). ``run_update`` fills it from the last
    evaluation when ``dynamic`` is on; weights written here by hand win over the computed ones."""

    @model_validator(mode="after")
    def _weight_bounds(self) -> ReplayConfig:
        if self.min_weight > self.max_weight:
            raise ValueError("min_weight must not exceed max_weight")
        bad = {t: w for t, w in self.task_weights.items() if w < 0}
        if bad:
            raise ValueError(f"task_weights must be >= 0, got {bad}")
        return self


class EwcConfig(_Section):
    """Online elastic weight consolidation (Kirkpatrick et al., 2017; online form: Schwarz et al., 2018)."""

    enabled: bool = False
    """Penalise moving the parameters that mattered to earlier updates."""
    strength: float = Field(default=0.003, ge=0.0)
    """lambda in ``lambda/2 * sum_i F_i (theta_i - theta*_i)^2``, with ``F`` the normalized accumulated Fisher
    (see ``normalize``) and ``theta*`` the parameters this update starts from (the parent's). With ``normalize:
    mean`` the pull on one parameter, ``lambda * F_i * (theta_i - theta*_i)``, has the same scale for every update,
    but the penalty is a sum over every trainable parameter, so against the language-model loss a larger adapter
    needs a smaller lambda. 0.003 is what ``clm bench continual`` recommends with replay for the demo model (LoRA r
    16 on every linear layer); EWC alone helped at no strength it tried (docs/continual.md)."""
    decay: float = Field(default=0.9, ge=0.0, le=1.0)
    """gamma of online EWC: ``F_acc = gamma * F_acc(parent) + F(this update)``. 1 sums every update's importance
    (classic EWC with one penalty per task), 0 remembers only the last update."""
    fisher_examples: int = Field(default=128, ge=1)
    """Examples (new and replayed, a seeded sample) whose per-example gradients make this update's Fisher."""
    normalize: Literal["mean", "max", "none"] = "mean"
    """Scale of each update's Fisher before it is accumulated: ``mean`` divides it by its mean (so it averages 1),
    ``max`` by its largest entry, ``none`` keeps raw values. A task the model has learnt well has a raw Fisher
    near 0 (~1e-9 in a pilot here), which makes the raw penalty vanish whatever the strength; normalizing keeps
    the relative importance of parameters and gives ``strength`` the same meaning for every update and model."""


class DistillationConfig(_Section):
    """Knowledge distillation from the previous champion (Hinton et al., 2015; LwF, Li & Hoiem, 2016)."""

    enabled: bool = False
    """Keep the model's answers close to those of the model it continues (base + parent adapter)."""
    weight: float = Field(default=0.1, ge=0.0)
    """Multiplier of the distillation term added to the training loss. 0.1: in a two-task pilot on the tiny demo
    model, 0.3 and above already cost accuracy on the new task; let the benchmark choose."""
    temperature: float = Field(default=2.0, gt=0.0)
    """Softmax temperature of teacher and student; the KL is multiplied by ``temperature**2`` so its gradients
    keep their size as the temperature changes."""
    top_k: int = Field(default=0, ge=0)
    """Compare only the teacher's ``top_k`` most likely tokens per position, with the rest of the vocabulary
    lumped into one bucket (0: the full vocabulary)."""


class FreezeConfig(_Section):
    """Layer freezing: trainable parameters that this update leaves as they are."""

    embeddings: bool = False
    """Freeze the trainable parameters of the input token embeddings (with LoRA on linear layers there are none)."""
    lowest_blocks: int = Field(default=0, ge=0)
    """Freeze the trainable parameters of the lowest N transformer blocks."""
    patterns: list[str] = Field(default_factory=list)
    """Regular expressions searched in parameter names (``re.search``); every matching trainable parameter is
    frozen, e.g. ``"self_attn"`` or ``r"layers\\.1\\..*lora_B"``. A pattern that matches no trainable parameter is an
    error (a typo would otherwise freeze nothing)."""

    @field_validator("patterns")
    @classmethod
    def _compile(cls, patterns: list[str]) -> list[str]:
        for p in patterns:
            try:
                re.compile(p)
            except re.error as exc:
                raise ValueError(f"{p!r} is not a regular expression: {exc}") from None
        return patterns

    @property
    def active(self) -> bool:
        return self.embeddings or self.lowest_blocks > 0 or bool(self.patterns)
