"""Experience replay: train on a mix of new data and a buffer of earlier data (Rolnick et al., 2019).

Three parts: :class:`Replay` mixes buffer examples into every batch while training, :func:`replay_weights` turns
the last evaluation into per-task replay weights (a task that fell gets more replay), and :func:`select_buffer`
decides which records the buffer keeps after an update. In a scheduled update the :class:`Replay` strategy owns
all three through its update hooks: it reads its buffer (the Delta ``replay`` table) and weighs its tasks in
``before_update`` and refills the buffer in ``after_update``.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa

from clm_lib.errors import TrainingError
from clm_lib.training.data import Batch, EpochSampler, Example
from clm_lib.training.strategies import register_strategy
from clm_lib.training.strategies.base import Strategy

if TYPE_CHECKING:
    from clm_lib.config import ClmConfig
    from clm_lib.training.context import TrainContext, TrainResult, UpdateContext
    from clm_lib.training.strategy_config import ReplayConfig

BUFFER_TABLE = "replay"
"""The Delta table that holds the buffer between updates."""


class Replay(Strategy):
    """Replace a share of every batch with examples from the replay buffer, weighted per task.

    Parameters: ``training.replay`` (:class:`~clm_lib.training.strategy_config.ReplayConfig`; ``mix_ratio``,
    ``task_weights`` and ``max_mix_ratio`` act while training, ``dynamic`` and its ``sensitivity``/``min_weight``/
    ``max_weight`` in ``before_update``, ``buffer_size`` and ``policy`` in ``after_update`` via
    :func:`select_buffer`).

    Between updates (``run_update``) it owns its state: ``before_update`` reads the newest buffer and, with
    ``dynamic``, adds the weights :func:`replay_weights` draws from the last evaluation to the configured ones
    (a weight set by hand wins); ``after_update`` refills the buffer from it and the update's new rows and
    returns the versions read and written, the buffer's composition after the refill and where the weights came
    from. The user's config is never changed.

    Task ``t`` with ``n_t`` buffered examples and weight ``w_t`` gets the share ``n_t w_t / sum(n w)`` of the
    replayed examples, and the batch share taken from the buffer is ``mix_ratio * sum(n w) / sum(n)`` (capped at
    ``max_mix_ratio``): with every weight 1 this is plain replay at ``mix_ratio``; a task with weight 2 is replayed
    twice as often as it would be without weights. Both shares are met exactly over a run, not just on average:
    step ``t`` replays ``floor((t+1)·m·B) - floor(t·m·B)`` examples (so a ratio like 0.3 of 16 is not rounded to 5
    every step), and each slot goes to the task furthest behind its share. Within a task, examples are drawn in
    shuffled epochs of their own (seeded with ``training.seed``), so each is revisited equally often. The new-data
    examples they displace are simply not drawn this step; the new data is still walked through in full epochs.
    With an empty buffer (the first update) nothing is replayed.
    """

    def __init__(
        self,
        mix_ratio: float,
        seed: int = 0,
        task_weights: Mapping[str, float] | None = None,
        max_mix_ratio: float = 0.8,
        policy: str = "task_balanced",
        buffer_size: int = 2000,
        dynamic: ReplayConfig | None = None,
    ) -> None:
        if not 0.0 <= mix_ratio < 1.0:
            raise ValueError(f"mix_ratio must be in [0, 1), got {mix_ratio}")
        if not 0.0 < max_mix_ratio < 1.0:
            raise ValueError(f"max_mix_ratio must be in (0, 1), got {max_mix_ratio}")
        self.mix_ratio = mix_ratio
        self.seed = seed
        self.task_weights = dict(task_weights or {})
        """The weights this run trains with: the configured ones, plus dynamic ones after ``before_update``."""
        self._configured_weights = dict(self.task_weights)
        self.max_mix_ratio = max_mix_ratio
        self.policy = policy
        self.buffer_size = buffer_size
        self.dynamic = dynamic
        """Settings of the dynamic weights (``training.replay``), or ``None`` to keep the configured weights."""
        self.buffer: pa.Table | None = None
        """The buffer ``before_update`` read (``None`` when the caller hands the buffer to the recipe itself)."""
        self.buffer_version: int | None = None
        self.weights_from = "configured"
        self.effective_ratio = mix_ratio
        self._tasks: list[str] = []
        self._pools: list[list[Example]] = []
        self._shares: list[float] = []
        self._samplers: list[EpochSampler] = []
        self._drawn: list[int] = []
        self._examples = 0

    @classmethod
    def from_config(cls, cfg: ClmConfig) -> Replay | None:
        r = cfg.training.replay
        if not r.enabled:
            return None
        return cls(
            r.mix_ratio,
            cfg.training.seed,
            r.task_weights,
            r.max_mix_ratio,
            r.policy,
            buffer_size=r.buffer_size,
            dynamic=r if r.dynamic else None,
        )

    def params(self) -> dict[str, Any]:
        replayed = sum(self._drawn)
        return {
            "mix_ratio": self.mix_ratio,
            "effective_mix_ratio": round(self.effective_ratio, 4),
            "policy": self.policy,
            "buffer_examples": sum(len(p) for p in self._pools),
            "buffer_tasks": {t: len(p) for t, p in zip(self._tasks, self._pools, strict=True)},
            "task_weights": {t: self._weight(t) for t in self._tasks},
            "replayed": dict(zip(self._tasks, self._drawn, strict=True)),
            "replay_fraction": round(replayed / self._examples, 4) if self._examples else 0.0,
        }

    def _weight(self, task: str) -> float:
        return float(self.task_weights.get(task, 1.0))

    # --- between updates: the buffer and the weights --------------------------------------------------------------

    def before_update(self, update: UpdateContext) -> None:
        from clm_lib.data import lake

        if BUFFER_TABLE in update.pinned_versions:
            # A retry: the killed try may have refilled the buffer already; train on what it trained on.
            self.buffer_version = update.pinned_versions[BUFFER_TABLE]
        else:
            self.buffer_version = lake.table_version(update.cfg, BUFFER_TABLE)
        if self.buffer_version is None:
            self.buffer = lake.SCHEMAS[BUFFER_TABLE].empty_table()
        else:
            self.buffer = lake.read_table(update.cfg, BUFFER_TABLE, version=self.buffer_version)
        update.data[BUFFER_TABLE] = self.buffer
        update.read_versions[BUFFER_TABLE] = self.buffer_version
        dynamic, self.weights_from = self._dynamic_weights(update.cfg)
        self.task_weights = {**dynamic, **self._configured_weights}

    def _dynamic_weights(self, cfg: ClmConfig) -> tuple[dict[str, float], str]:
        """Weights from the last evaluation, and where they came from.

        The last evaluation's matrix holds the scores of the model it evaluated and of that model's parent: a
        task that fell between the two gets more replay now.
        """
        if self.dynamic is None:
            return {}, "configured (training.replay.dynamic is off)"
        from sqlalchemy import select

        from clm_lib.db import session_scope
        from clm_lib.db.models import Evaluation

        with session_scope(cfg.database_url) as s:
            last = s.scalars(select(Evaluation).order_by(Evaluation.id.desc())).first()
            rows = [dict(zip(last.tasks, row, strict=True)) for row in last.matrix[-2:]] if last else []
            source = f"evaluation {last.id} of training run {last.training_run_id}" if last else ""
        if len(rows) < 2:
            return {}, "configured (no evaluation compares two models yet)"
        by_hand = " (training.replay.task_weights wins where set)" if self._configured_weights else ""
        return replay_weights(rows[0], rows[1], self.dynamic), f"score changes at {source}{by_hand}"

    def after_update(self, update: UpdateContext, result: TrainResult) -> dict[str, Any]:
        from clm_lib.data import lake

        if self.buffer is None:
            raise TrainingError("replay: after_update without before_update, there is no buffer to refill")
        refilled = select_buffer(self.buffer, update.new, self.buffer_size, self.seed, self.policy)
        written = lake.overwrite(update.cfg, BUFFER_TABLE, refilled)
        after: dict[str, int] = {}
        for task in refilled.column("task").to_pylist():
            after[task] = after.get(task, 0) + 1
        return {
            "buffer_version": self.buffer_version,
            "buffer_version_written": written,
            "buffer_tasks_after": after,
            "weights_from": self.weights_from,
        }

    def before_training(self, ctx: TrainContext) -> None:
        by_task: dict[str, list[Example]] = {}
        for ex in ctx.data.get("replay", []):
            by_task.setdefault(ex.task, []).append(ex)
        self._tasks, self._pools = list(by_task), list(by_task.values())
        mass = [len(p) * self._weight(t) for t, p in by_task.items()]
        total = sum(len(p) for p in self._pools)
        self._shares = [m / sum(mass) for m in mass] if sum(mass) > 0 else [0.0] * len(mass)
        # The cap only limits what weights add: with every weight 1 the ratio is mix_ratio, whatever the cap.
        cap = max(self.mix_ratio, self.max_mix_ratio)
        self.effective_ratio = min(cap, self.mix_ratio * sum(mass) / total) if total else 0.0
        # Each task walks its own seeded order of its examples.
        self._samplers = [EpochSampler(len(p), self.seed + i) for i, p in enumerate(self._pools)]
        self._drawn = [0] * len(self._tasks)
        self._examples = 0

    def quota(self, step: int, batch_size: int) -> int:
        """How many examples of step ``step`` come from the buffer."""
        share = self.effective_ratio * batch_size
        return min(batch_size, math.floor((step + 1) * share + 1e-9) - math.floor(step * share + 1e-9))

    def _next_task(self) -> int:
        """The task furthest behind its share of everything replayed so far (ties: buffer order)."""
        after = sum(self._drawn) + 1
        live = [i for i, s in enumerate(self._shares) if s > 0]
        return max(live, key=lambda i: (self._shares[i] * after - self._drawn[i], -i))

    def before_batch(self, ctx: TrainContext, batch: Batch) -> Batch | None:
        self._examples += len(batch.examples)
        k = self.quota(ctx.step, len(batch.examples)) if self._pools else 0
        if k == 0:
            return None
        replayed = []
        for _ in range(k):
            i = self._next_task()
            self._drawn[i] += 1
            replayed.append(self._pools[i][self._samplers[i].take(1)[0]])
        return Batch(examples=batch.examples[: len(batch.examples) - k] + replayed)

    def state_dict(self) -> dict[str, Any]:
        return {
            "samplers": [s.state_dict() for s in self._samplers],
            "drawn": list(self._drawn),
            "examples": self._examples,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            return
        samplers = state["samplers"]
        if len(samplers) != len(self._samplers):
            raise TrainingError(f"the checkpoint replays {len(samplers)} tasks, this buffer has {len(self._samplers)}")
        for sampler, s in zip(self._samplers, samplers, strict=True):
            sampler.load_state_dict(s)
        self._drawn = [int(n) for n in state["drawn"]]
        self._examples = int(state["examples"])


def replay_weights(
    previous: Mapping[str, float | None], latest: Mapping[str, float | None], cfg: ReplayConfig
) -> dict[str, float]:
    """Replay weight per task from its score at the last two evaluations (``training.replay.sensitivity``).

    ``1 + sensitivity * (previous - latest)`` clipped to ``[min_weight, max_weight]``: a task that fell gets more
    replay, one that improved less. Tasks without both scores (not yet learnt at the earlier evaluation) are
    left out, so they keep weight 1.
    """
    weights = {}
    for task, now in latest.items():
        before = previous.get(task)
        if now is None or before is None:
            continue
        raw = 1.0 + cfg.sensitivity * (float(before) - float(now))
        weights[task] = round(min(cfg.max_weight, max(cfg.min_weight, raw)), 4)
    return weights


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


def select_buffer(
    existing: pa.Table | None,
    new: pa.Table | None,
    size: int,
    seed: int,
    policy: Literal["task_balanced", "reservoir"] = "task_balanced",
) -> pa.Table:
    """The replay buffer after an update: at most ``size`` records, by ``policy`` (``training.replay.policy``).

    Both policies are reservoir samples kept as bottom-k sampling: every record gets a pseudo-random key from
    ``(seed, id)`` and the records with the smallest keys stay, over all records (``reservoir``) or within each
    task's equal share (``task_balanced``). That is a uniform sample of all the records ever offered (per task,
    for ``task_balanced``), it is deterministic, and a record stays in the buffer until a record with a smaller key
    or a shrinking task share pushes it out, so consecutive buffers overlap as much as possible. Records are
    identified by ``id`` (duplicates are kept once, the existing copy first). Rows come back grouped by task, in
    order of first appearance, with the columns of both inputs (missing values null).
    """
    if size < 0:
        raise ValueError(f"size must be >= 0, got {size}")
    if policy not in ("task_balanced", "reservoir"):
        raise ValueError(f"policy must be task_balanced or reservoir, got {policy!r}")
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
    if policy == "reservoir":
        kept = {row for _k, row in sorted(kr for rows in by_task.values() for kr in rows)[:size]}
        picked = [row for rows in by_task.values() for _k, row in sorted(rows) if row in kept]
    else:
        quotas = _quotas({t: len(rows) for t, rows in by_task.items()}, size)
        picked = [row for task, rows in by_task.items() for _k, row in sorted(rows)[: quotas[task]]]
    return combined.take(pa.array(picked, pa.int64()))


register_strategy(name="replay", strategy_cls=Replay)
