"""Experience replay: train on a mix of new data and a buffer of earlier data (Rolnick et al., 2019).

Two parts: :class:`Replay` mixes buffer examples into every batch while training, and :func:`select_buffer`
decides which records the buffer keeps after an update (the caller persists it, as the Delta ``replay`` table).
"""

from __future__ import annotations

import hashlib
import math
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from clm_lib.training.data import Batch, EpochSampler
from clm_lib.training.strategies import Strategy, register_strategy

if TYPE_CHECKING:
    from clm_lib.config import ClmConfig
    from clm_lib.training.loop import TrainContext


@register_strategy("replay")
class Replay(Strategy):
    """Replace a share of every batch with examples from the replay buffer.

    Parameters (``training.replay`` in clm.yaml):

    * ``mix_ratio`` -- share of each batch taken from the buffer, in [0, 1). Over any run of steps the number of
      replayed examples is ``mix_ratio * batch_size`` per step up to rounding: step ``t`` replays
      ``floor((t+1)·m·B) - floor(t·m·B)`` examples, so a ratio like 0.3 of 16 is met exactly on average, not
      rounded to 5 every step. The new-data examples they displace are simply not drawn this step; the new data is
      still walked through in full epochs.
    * ``enabled`` -- off gives plain sequential fine-tuning (the strategy is not built).
    * ``buffer_size`` -- records the buffer keeps; used by :func:`select_buffer`, not while training.

    With an empty buffer (the first update) nothing is replayed. Buffer examples are drawn in shuffled epochs of
    their own, seeded with ``training.seed``, so every buffered record is revisited equally often.
    """

    def __init__(self, mix_ratio: float, seed: int = 0) -> None:
        if not 0.0 <= mix_ratio < 1.0:
            raise ValueError(f"mix_ratio must be in [0, 1), got {mix_ratio}")
        self.mix_ratio = mix_ratio
        self.seed = seed
        self._pool: list = []
        self._sampler: EpochSampler | None = None

    @classmethod
    def from_config(cls, cfg: ClmConfig) -> Replay | None:
        replay = cfg.training.replay
        return cls(replay.mix_ratio, seed=cfg.training.seed) if replay.enabled else None

    def params(self) -> dict[str, Any]:
        return {"mix_ratio": self.mix_ratio, "buffer_examples": len(self._pool)}

    def before_training(self, ctx: TrainContext) -> None:
        self._pool = list(ctx.data.get("replay", []))
        self._sampler = EpochSampler(len(self._pool), self.seed) if self._pool else None

    def quota(self, step: int, batch_size: int) -> int:
        """How many examples of step ``step`` come from the buffer."""
        share = self.mix_ratio * batch_size
        return min(batch_size, math.floor((step + 1) * share + 1e-9) - math.floor(step * share + 1e-9))

    def before_batch(self, ctx: TrainContext, batch: Batch) -> Batch | None:
        if self._sampler is None:
            return None
        k = self.quota(ctx.step, len(batch.examples))
        if k == 0:
            return None
        replayed = [self._pool[i] for i in self._sampler.take(k)]
        return Batch(examples=batch.examples[: len(batch.examples) - k] + replayed)

    def state_dict(self) -> dict[str, Any]:
        return {"sampler": self._sampler.state_dict()} if self._sampler else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self._sampler is not None and "sampler" in state:
            self._sampler.load_state_dict(state["sampler"])


def _key(seed: int, row_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(f"{seed}:{row_id}".encode(), digest_size=8).digest(), "big")


def _quotas(counts: dict[str, int], size: int) -> dict[str, int]:
    """Split ``size`` evenly over tasks; a task with fewer records leaves its share to the others."""
    quotas: dict[str, int] = {}
    remaining = size
    by_count = sorted(counts, key=lambda t: counts[t])
    for i, task in enumerate(by_count):
        quotas[task] = min(counts[task], remaining // (len(by_count) - i))
        remaining -= quotas[task]
    return quotas


def select_buffer(existing: pa.Table | None, new: pa.Table | None, size: int, seed: int) -> pa.Table:
    """The replay buffer after an update: at most ``size`` records, balanced over tasks.

    Within a task this is a reservoir sample kept as bottom-k sampling: every record gets a pseudo-random key from
    ``(seed, id)`` and a task keeps its records with the smallest keys. That is a uniform sample of all the records
    the task ever offered, it is deterministic, and a record stays in the buffer until a record with a smaller key
    or a shrinking task share pushes it out, so consecutive buffers overlap as much as possible. Records are
    identified by ``id`` (duplicates are kept once, the existing copy first). Rows come back grouped by task, in
    order of first appearance, with the columns of both inputs (missing values null).
    """
    if size < 0:
        raise ValueError(f"size must be >= 0, got {size}")
    tables = [t for t in (existing, new) if t is not None]
    if not tables:
        raise ValueError("select_buffer needs at least one table")
    for t in tables:
        missing = {"id", "task"} - set(t.column_names)
        if missing:
            raise ValueError(f"replay records need columns id and task; missing {', '.join(sorted(missing))}")
    combined = pa.concat_tables(tables, promote_options="permissive") if len(tables) > 1 else tables[0]
    ids = combined.column("id").to_pylist()
    tasks = combined.column("task").to_pylist()
    seen: set[str] = set()
    by_task: dict[str, list[tuple[int, int]]] = {}
    for row, (row_id, task) in enumerate(zip(ids, tasks, strict=True)):
        if row_id in seen:
            continue
        seen.add(row_id)
        by_task.setdefault(task, []).append((_key(seed, row_id), row))
    quotas = _quotas({t: len(rows) for t, rows in by_task.items()}, size)
    picked = [row for task, rows in by_task.items() for _key_, row in sorted(rows)[: quotas[task]]]
    return combined.take(pa.array(picked, pa.int64()))
