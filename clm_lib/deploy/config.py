"""How a candidate that passed the gate reaches production traffic, and when it is pulled back.

A rollout deploys the candidate to the idle serving slot, smoke-tests it, then shifts traffic in steps
(``canary``) or at once (``blue_green``). After every step it bakes: for ``bake_seconds`` it watches the
candidate's live metrics, and at the end it scores a few held-out examples through the candidate and the
stable slot (the online golden set). Any breached rule sets the candidate's weight back to 0 and records why;
the champion alias moves only after the last step baked clean, and the old slot stays warm for a rollback.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class SafetyRules(_Section):
    """Limits on the candidate during every bake window; one breach rolls it back."""

    max_error_rate: float = Field(default=0.05, ge=0.0, le=1.0)
    """Largest share of failed requests (5xx, timeouts) the candidate may serve in a window."""
    max_p95_ms: float = Field(default=2000.0, gt=0)
    """Largest 95th-percentile latency of the candidate's requests, in milliseconds."""
    min_requests: int = Field(default=20, ge=1)
    """Error rate and latency are judged only on at least this many requests in the window; with fewer the
    result says "not judged" (the golden set still judges the candidate)."""
    min_feedback_mean: float | None = None
    """Lowest mean user rating of the candidate's answers in a window (the serving feedback scale); None: off."""
    golden_examples_per_task: int = Field(default=4, ge=0)
    """Held-out examples per task sent to the candidate and to the stable slot at the end of each window
    (the same rows every time: the evaluation's stable subset). 0 turns the golden-set rule off."""
    max_golden_drop: float = Field(default=25.0, ge=0, le=100)
    """Largest drop, in exact-match points (0-100), of the candidate's golden-set score below the stable
    slot's on the same examples. Few examples make a coarse score (4 per task over 5 tasks: 5-point steps)."""
    min_golden_accuracy: float = Field(default=0.0, ge=0, le=100)
    """Lowest golden-set exact-match score (0-100) of the candidate, with or without a stable slot."""
    golden_max_tokens: int = Field(default=32, ge=1)
    """``max_tokens`` of each golden-set completion request."""


class DeployConfig(_Section):
    """Promotion of a gated candidate to serving, and rollback."""

    strategy: Literal["canary", "blue_green", "alias"] = "canary"
    """``canary``: shift traffic along ``canary_steps`` with a bake window after each. ``blue_green``: switch
    all traffic at once, then bake once (the old slot stays warm). ``alias``: no serving; only the ``champion``
    alias moves (for a serving layer that follows the alias itself)."""
    canary_steps: list[int] = Field(default=[10, 50, 100], min_length=1)
    """Percent of traffic on the candidate at each canary step; strictly increasing, ending at 100."""
    bake_seconds: float = Field(default=60.0, ge=0)
    """Length of the bake window after each traffic step (seconds; a few tenths in tests and the demo)."""
    poll_seconds: float = Field(default=5.0, gt=0)
    """How often live metrics and slot health are checked during a bake window."""
    rules: SafetyRules = SafetyRules()
    lock_wait_seconds: float = Field(default=60.0, ge=0)
    """How long a promotion or rollback waits for the other to finish its current step before it answers
    "busy". Bake windows run without the lock, so a rollback waits at most for one deploy or traffic switch."""
    lock_lease_seconds: float = Field(default=900.0, gt=0)
    """The deploy lock frees itself this long after it was taken, so a holder that died blocks nobody for
    ever. Must exceed the longest step taken under it (loading a model into a slot)."""

    @field_validator("canary_steps")
    @classmethod
    def _steps(cls, v: list[int]) -> list[int]:
        if any(not 0 < w <= 100 for w in v):
            raise ValueError("each canary step is a percentage in 1..100")
        if any(a >= b for a, b in pairwise(v)):
            raise ValueError("canary steps must be strictly increasing")
        if v[-1] != 100:
            raise ValueError("the last canary step must be 100 (all traffic on the candidate)")
        return v

    def steps(self) -> list[int]:
        """The traffic steps this strategy takes ([] for ``alias``)."""
        return {"canary": self.canary_steps, "blue_green": [100], "alias": []}[self.strategy]
