"""Training batches and sampling, over the labelled examples of :mod:`clm_lib.modeling.examples`.

Encoding lives in ``modeling`` because evaluation scores the very same examples; it is re-exported here for the
training modules.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from clm_lib.modeling.examples import (
    IGNORE_INDEX,
    MIN_PROMPT_TOKENS,
    REQUIRED_COLUMNS,
    Example,
    check_table,
    collate,
    encode_pairs,
    encode_table,
)
from clm_lib.modeling.prompt import special_ids

__all__ = [
    "IGNORE_INDEX",
    "MIN_PROMPT_TOKENS",
    "REQUIRED_COLUMNS",
    "Batch",
    "EpochSampler",
    "Example",
    "check_table",
    "collate",
    "encode_pairs",
    "encode_table",
    "special_ids",
]


@dataclass
class Batch:
    """Examples of one optimizer step; ``inputs`` are their collated tensors, filled in by the loop."""

    examples: list[Example]
    inputs: dict[str, torch.Tensor] = field(default_factory=dict)

    def count(self, source: str) -> int:
        return sum(ex.source == source for ex in self.examples)


class EpochSampler:
    """Draws indices in shuffled epochs: every example once per epoch, a new order each epoch.

    The order of epoch ``e`` depends only on ``(seed, e)``, so the state is two integers and a resumed run draws
    exactly what the interrupted one would have.
    """

    def __init__(self, size: int, seed: int) -> None:
        if size <= 0:
            raise ValueError("cannot sample from an empty set")
        self.size, self.seed = size, seed
        self.epoch, self.position = 0, 0
        self._order = self._permutation()

    def _permutation(self) -> np.ndarray:
        return np.random.default_rng([self.seed, self.epoch]).permutation(self.size)

    def take(self, k: int) -> list[int]:
        out: list[int] = []
        while len(out) < k:
            if self.position == self.size:
                self.epoch, self.position = self.epoch + 1, 0
                self._order = self._permutation()
            step = min(k - len(out), self.size - self.position)
            out.extend(int(i) for i in self._order[self.position : self.position + step])
            self.position += step
        return out

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self._order = self._permutation()
