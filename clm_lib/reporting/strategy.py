"""The Continual strategy screen and ``/clm/api/v1/.../strategy``: what each strategy did in each training run.

Nothing is re-derived here: each strategy records its parameters and what it did (``Strategy.params()`` merged
with its ``after_update`` record, stored in ``training_runs.strategies[name]`` by
:func:`clm_lib.training.update.run_update`).
Replay: the buffer per task before and after the refill, the Delta versions read and written, the per-task weights
and where they came from (the last evaluation's score changes, or the configured ones), the share of trained
examples that came from the buffer. EWC: its strength, decay and a summary of the Fisher it pulled with. Distillation:
weight, temperature, top-k, whether there was a teacher. Freezing: what was frozen. Other strategies (O-LoRA,
plugins) are shown as recorded.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from datetime import datetime
from typing import Annotated, Any

from pydantic import Field, computed_field
from sqlalchemy import select

from clm_lib.config import ClmConfig
from clm_lib.db.models import TrainingRun
from clm_lib.reporting import charts
from clm_lib.reporting.domain import DomainAdaptations, domain_adaptations
from clm_lib.reporting.schema import DOCUMENTED
from clm_lib.reporting.stores import reading, utc
from clm_lib.reporting.training import RUN_ID, NotFound

MAX_HISTORY = 200
KNOWN = ("replay", "ewc", "distillation", "freezing")


@dataclass(frozen=True)
class ReplayRecord:
    """What replay did in a run: the buffer before and after, the versions, the weights."""

    __pydantic_config__ = DOCUMENTED

    mix_ratio: float | None = None
    """Configured share of each batch taken from the buffer."""
    effective_mix_ratio: float | None = None
    """The share after the task weights (capped at ``max_mix_ratio``)."""
    replay_fraction: float | None = None
    """Share of the examples trained on that came from the buffer."""
    policy: str | None = None
    buffer_examples: int | None = None
    buffer_tasks: dict[str, int] = field(default_factory=dict)
    """The buffer trained on, per task."""
    buffer_tasks_after: dict[str, int] = field(default_factory=dict)
    """The buffer after this run refilled it, per task."""
    buffer_version: int | None = None
    buffer_version_written: int | None = None
    task_weights: dict[str, float] = field(default_factory=dict)
    weights_from: str | None = None
    """Why the weights are what they are."""
    replayed: dict[str, int] = field(default_factory=dict)

    @computed_field
    @property
    def dynamic(self) -> bool:
        """The weights followed the last evaluation's score changes (not the configured ones)."""
        return bool(self.weights_from and self.weights_from.startswith("score changes"))


@dataclass(frozen=True)
class EwcRecord:
    """What EWC did in a run: its strength, decay and the Fisher it pulled with."""

    __pydantic_config__ = DOCUMENTED

    strength: float | None = None
    decay: float | None = None
    normalize: str | None = None
    fisher_examples: int | None = None
    prior_updates: int | None = None
    """Earlier updates whose Fisher this run was pulled by (0: no penalty this run)."""
    pulled_parameters: int | None = None
    fisher_raw_mean: float | None = None
    """Mean of this run's Fisher before normalization."""
    last_penalty: float | None = None


@dataclass(frozen=True)
class DistillationRecord:
    """What distillation did in a run."""

    __pydantic_config__ = DOCUMENTED

    weight: float | None = None
    temperature: float | None = None
    top_k: int | None = None
    teacher: bool | None = None
    last_loss: float | None = None


@dataclass(frozen=True)
class FreezingRecord:
    """What a run froze."""

    __pydantic_config__ = DOCUMENTED

    embeddings: bool | None = None
    lowest_blocks: int | None = None
    patterns: list[str] = field(default_factory=list)
    frozen_parameters: int | None = None
    frozen_numel: int | None = None
    trainable_numel: int | None = None
    frozen_modules: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Segment:
    """One task's part of the replay buffer."""

    __pydantic_config__ = DOCUMENTED

    task: str
    count: int
    share: float
    """0-100."""


@dataclass(frozen=True)
class RunStrategy:
    """The strategies of one training run, as recorded."""

    __pydantic_config__ = DOCUMENTED

    run_id: str
    status: str
    started_at: datetime | None
    model_version: str | None
    recorded: bool
    """False: the run recorded no strategies (still running, failed, or trained without any)."""
    replay: ReplayRecord | None
    ewc: EwcRecord | None
    distillation: DistillationRecord | None
    freezing: FreezingRecord | None
    other: dict[str, dict[str, Any]]
    replay_fraction: float | None

    @computed_field
    @property
    def composition(self) -> list[Segment]:
        """The replay buffer after this run, per task, as shares of it."""
        counts = self.replay.buffer_tasks_after if self.replay else {}
        total = sum(counts.values())
        return [Segment(t, n, round(100 * n / total, 1)) for t, n in counts.items()] if total else []


@dataclass(frozen=True)
class StrategyHistory:
    """Succeeded runs' strategies over time."""

    __pydantic_config__ = DOCUMENTED

    runs: list[RunStrategy]
    """Oldest first."""
    tasks: list[str]
    """Every task seen in a buffer, in order of first appearance."""
    chart: Annotated[charts.Chart | None, Field(exclude=True)] = None
    """The screen's drawing of the replay fraction (SVG coordinates): left out of REST answers, which carry the
    numbers it is drawn from."""


@dataclass
class StrategyPage:
    history: StrategyHistory
    selected: RunStrategy | None
    domain: DomainAdaptations | None = None
    """Domain-adapted bases and their before/after comparisons (:mod:`clm_lib.reporting.domain`)."""


def _pick(cls, raw: Any):
    """``cls`` from the keys of ``raw`` it knows (a record from an older clm may lack some; values of the wrong
    shape are dropped, never shown as something they are not)."""
    if not isinstance(raw, Mapping):
        return None
    out = {}
    for f in fields(cls):
        value = raw.get(f.name)
        shape = type(f.default_factory()) if f.default_factory is not MISSING else None
        if value is None or (type(value) if isinstance(value, dict | list) else None) is not shape:
            continue
        if isinstance(value, dict):
            value = {str(k): v for k, v in value.items() if isinstance(v, int | float) and not isinstance(v, bool)}
        elif isinstance(value, list):
            value = [str(v) for v in value]
        elif not isinstance(value, str | int | float | bool):
            continue
        out[f.name] = value
    return cls(**out)


def _of(run: TrainingRun) -> RunStrategy:
    recorded = run.strategies if isinstance(run.strategies, dict) else {}
    replay = _pick(ReplayRecord, recorded.get("replay"))
    metrics = run.metrics or {}
    fraction = metrics.get("replay_fraction")
    if not isinstance(fraction, int | float) and replay is not None:
        fraction = replay.replay_fraction
    return RunStrategy(
        run_id=run.id,
        status=run.status,
        started_at=utc(run.started_at),
        model_version=run.model_version,
        recorded=bool(recorded),
        replay=replay,
        ewc=_pick(EwcRecord, recorded.get("ewc")),
        distillation=_pick(DistillationRecord, recorded.get("distillation")),
        freezing=_pick(FreezingRecord, recorded.get("freezing")),
        other={str(k): dict(v) for k, v in recorded.items() if k not in KNOWN and isinstance(v, dict)},
        replay_fraction=float(fraction) if isinstance(fraction, int | float) else None,
    )


def run_strategy(cfg: ClmConfig, run_id: str) -> RunStrategy:
    if not RUN_ID.fullmatch(run_id or ""):
        raise NotFound(f"no training run {run_id[:80]!r}")
    with reading(cfg.database_url) as s:
        run = s.get(TrainingRun, run_id)
        if run is None:
            raise NotFound(f"no training run {run_id!r}")
        return _of(run)


def history(cfg: ClmConfig, limit: int = 50) -> StrategyHistory:
    """The newest ``limit`` runs that recorded strategies, oldest first, with the replay-fraction chart."""
    limit = max(1, min(limit, MAX_HISTORY))
    with reading(cfg.database_url) as s:
        stmt = select(TrainingRun).where(TrainingRun.status == "succeeded")
        newest = list(s.scalars(stmt.order_by(TrainingRun.started_at.desc(), TrainingRun.id.desc()).limit(limit)))
        runs = [_of(r) for r in reversed(newest)]
    tasks: dict[str, None] = {}
    for r in runs:
        if r.replay:
            tasks.update(dict.fromkeys(r.replay.buffer_tasks))
            tasks.update(dict.fromkeys(r.replay.buffer_tasks_after))
    return StrategyHistory(runs, list(tasks), _fraction_chart(runs))


def _fraction_chart(runs: list[RunStrategy]) -> charts.Chart | None:
    """Replay fraction per run (one slot per run), against the configured mix ratio of that run."""
    if not any(r.replay_fraction is not None for r in runs):
        return None
    points = []
    for i, r in enumerate(runs):
        ratio = r.replay.mix_ratio if r.replay else None
        title = f"{r.run_id}: replay fraction " + ("not recorded" if r.replay_fraction is None
                                                    else f"{r.replay_fraction:.1%}")  # fmt: skip
        points.append(charts.Point(i, r.replay_fraction, ratio, "pt pt-ok", title))
    ticks = [(0, f"{runs[0].started_at:%m-%d}" if runs[0].started_at else runs[0].run_id)]
    if len(runs) > 1:
        ticks.append((len(runs) - 1, f"{runs[-1].started_at:%m-%d}" if runs[-1].started_at else runs[-1].run_id))
    return charts.series_chart(points, len(runs), ticks, charts.LinearScale(1.0))


def build_strategy(cfg: ClmConfig, args: Mapping[str, str] | None = None) -> StrategyPage:
    """The Continual strategy screen: the history and one run (``run``, default the newest) in detail."""
    args = args or {}
    found = history(cfg)
    wanted = args.get("run")
    selected = run_strategy(cfg, wanted) if wanted else (found.runs[-1] if found.runs else None)
    return StrategyPage(found, selected, domain_adaptations(cfg))
