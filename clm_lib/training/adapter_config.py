"""Settings of per-task adapters and their router (``training.adapters`` in clm.yaml).

Kept apart from ``clm_lib.config`` like every section that belongs to one concept, and free of torch/numpy so
that reading the config stays cheap (DAG parsing reads it).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class RouterConfig(_Section):
    """The learned router that picks a task's adapter for a prompt when the caller names no task.

    A logistic regression on hashed word 1-2-grams of the prompt (scikit-learn). It is refitted after every update
    on a bounded memory of each task's prompts, kept with the adapter as hashed features (not as text), so it
    remembers tasks whose data is gone from the update and from the replay buffer.
    """

    examples_per_task: int = Field(default=200, ge=2)
    """Prompts per task the router remembers (a deterministic uniform sample of all the task's prompts so far)."""
    holdout_fraction: float = Field(default=0.2, ge=0.0, lt=1.0)
    """Share of remembered prompts held out of the fit to measure the router's accuracy (stored with the run)."""
    n_features: int = Field(default=2**15, ge=2**8, le=2**22)
    """Hashed feature dimensions. Larger: fewer n-gram collisions, a bigger router file (tasks x n_features)."""
    inverse_regularization: float = Field(default=10.0, gt=0)
    """``C`` of the logistic regression: larger fits the remembered prompts more closely."""


class AdaptersConfig(_Section):
    """How LoRA adapters are organised across tasks."""

    mode: Literal["shared", "per_task"] = "shared"
    """``shared``: one adapter that every update continues (with replay etc. against forgetting).
    ``per_task``: one adapter per task over the shared frozen base; an update trains only the adapters of the
    tasks in its new data (a new task gets a new adapter), so the others cannot change at all. Each request goes to
    its task's adapter: by the task id the caller gives, else by the learned router."""
    orthogonality: float = Field(default=0.0, ge=0.0)
    """Weight of the O-LoRA penalty (Wang et al., 2023): the squared Frobenius norm of ``A_t A_j^T`` summed over
    layers and over every other adapter ``j``, which pushes a trained adapter's input subspace away from the others'.
    0 switches it off. Only with ``mode: per_task``."""
    router: RouterConfig = RouterConfig()

    @model_validator(mode="after")
    def _orthogonality_needs_per_task(self) -> AdaptersConfig:
        if self.orthogonality > 0 and self.mode != "per_task":
            raise ValueError("orthogonality is a penalty between per-task adapters: set mode: per_task or 0")
        return self
