"""The Multi-task screen and ``/clm/api/v1/tasks``: every task, its adapter in the champion, its scores and routing.

Per task: the curated rows it brought (``ingestion_batches.task_counts``) and when its data last arrived, the
champion's latest score and its trend along the champion's lineage (the rows of its accuracy matrix), whether the
champion answers it with an adapter of its own (``training.adapters.mode: per_task``) or with the one shared adapter,
that adapter's rank and size, and how often the champion's router sends the task's held-out prompts to it.

Nothing here loads a model: adapter facts come from ``adapter_config.json`` and file sizes, routing from the router's
saved weights and memory (:mod:`clm_lib.modeling.task_adapters`). The champion's adapter is read where its training
run wrote it (``training_runs.output_dir``); one trained on another machine is said to be elsewhere, not fetched.
A missing clm database is a :class:`~clm_lib.reporting.stores.StoreDown`; MLflow that cannot be read is a state.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from clm_lib.config import ClmConfig
from clm_lib.db.models import Evaluation, IngestionBatch, TrainingRun
from clm_lib.errors import TrainingError
from clm_lib.modeling.router import TaskRouter
from clm_lib.modeling.task_adapters import (
    AdapterFacts,
    adapter_facts,
    adapter_path,
    load_router,
    read_manifest,
)
from clm_lib.reporting.overview import registry_state
from clm_lib.reporting.stores import reading, utc

log = logging.getLogger(__name__)

MAX_TASK = 200
"""Longest task name a route accepts in its path."""


class UnknownTask(LookupError):
    """No configured task, no adapter of the champion and no curated data has this name."""


@dataclass(frozen=True)
class ScorePoint:
    """The task's score after one update along the champion's lineage."""

    version: str | None
    """The model version that update produced (None: never registered)."""
    score: float | None
    """Accuracy 0-100 on the task's held-out set (None: not learnt yet at that update)."""


@dataclass(frozen=True)
class Champion:
    """The serving champion's adapters and router, as its training run left them on disk."""

    version: str | None
    """None: no champion (nothing promoted yet, or MLflow could not be read: see ``registry``)."""
    training_run_id: str | None
    mode: Literal["per_task", "shared", "unknown"]
    """``per_task``: one adapter per task plus a router; ``shared``: one adapter answers every task."""
    problem: str | None
    """Why the adapters could not be read (``mode`` is then ``unknown``)."""
    adapters: dict[str, AdapterFacts] = field(default_factory=dict)
    """Task -> its adapter (per_task), or ``"*"`` -> the shared adapter."""
    router_accuracy: float | None = None
    """Share (0-1) of the router's held-out remembered prompts it sends to their own task's adapter (measured when
    the router was fitted)."""
    router_accuracy_by_task: dict[str, float] = field(default_factory=dict)
    router_held_out: int = 0
    """Held-out prompts the accuracy was measured on."""
    tasks: list[str] = field(default_factory=list)
    """The tasks its training run learnt, in order."""
    scores: dict[str, float] = field(default_factory=dict)
    """Its latest evaluation, task -> accuracy 0-100."""


@dataclass(frozen=True)
class TaskRow:
    """One task across data, adapters, scores and routing."""

    task: str
    configured: bool
    """Listed in ``data.tasks`` (records of a task not listed are quarantined as ``unknown_task``)."""
    curated_rows: int
    """Rows curated for it, summed over committed ingestion batches."""
    last_data_at: datetime | None
    """When the newest committed batch with rows of it finished."""
    score: float | None
    """The champion's latest accuracy on it, 0-100 (None: the champion has not learnt it)."""
    change: float | None
    """Score minus its score at the previous update along the champion's lineage."""
    trend: list[ScorePoint]
    """Its score at each update along the champion's lineage, oldest first."""
    adapter: Literal["own", "shared", "none", "unknown"]
    """``own``: the champion has an adapter for this task alone; ``shared``: one adapter serves every task; ``none``:
    the champion has none for it (not learnt yet); ``unknown``: the champion's adapters could not be read."""
    adapter_name: str | None
    rank: int | None
    """LoRA rank of the adapter that answers it."""
    size_bytes: int | None
    router_accuracy: float | None
    """Share (0-1) of its held-out prompts the champion's router sends to its adapter (None: no router)."""


@dataclass(frozen=True)
class TasksOverview:
    """The Multi-task screen."""

    tasks: list[TaskRow]
    configured: list[str]
    """``data.tasks`` as clm's pipeline reads it now."""
    champion: Champion
    registry: str
    """``ok``, ``empty`` (nothing registered) or why MLflow could not be read."""
    generated_at: datetime

    @property
    def status(self) -> int:
        return 200


def configured_tasks(s: Session, cfg: ClmConfig) -> list[str]:
    """``data.tasks`` of the live configuration revision (``clm_lib.config_store``), else of ``cfg``.

    Read without seeding revision 1: a page view stores nothing."""
    if cfg.revision is not None:
        return list(cfg.data.tasks)
    from clm_lib.config_store import effective
    from clm_lib.db.models import ConfigRevision

    row = s.scalar(select(ConfigRevision).order_by(ConfigRevision.number.desc()).limit(1))
    return list(effective(cfg, row.content).data.tasks if row is not None else cfg.data.tasks)


def _data_by_task(s: Session) -> dict[str, tuple[int, datetime | None]]:
    found: dict[str, tuple[int, datetime | None]] = {}
    for counts, finished in s.execute(
        select(IngestionBatch.task_counts, IngestionBatch.finished_at).where(IngestionBatch.status == "committed")
    ):
        for task, n in (counts or {}).items():
            if not isinstance(n, int) or n <= 0:
                continue
            rows, last = found.get(str(task), (0, None))
            when = utc(finished)
            found[str(task)] = (rows + n, max(filter(None, (last, when)), default=None))
    return found


def _router(adapter_dir: Path) -> TaskRouter | None:
    try:
        return load_router(adapter_dir)
    except (OSError, ValueError, KeyError) as exc:
        raise TrainingError(f"the router in {adapter_dir} cannot be read: {exc}") from None


def champion_adapters(s: Session, version: str | None) -> tuple[Champion, TaskRouter | None, list[str | None]]:
    """The champion's adapters and router, and the model version of each row of its accuracy matrix."""
    if version is None:
        return Champion(None, None, "unknown", "no champion yet: nothing has been promoted"), None, []
    run = s.scalars(
        select(TrainingRun).where(TrainingRun.model_version == version).order_by(TrainingRun.started_at.desc())
    ).first()
    if run is None:
        return Champion(version, None, "unknown", f"clm's database has no training run for version {version}"), None, []
    from clm_lib.evaluation.evaluate import latest_evaluation, lineage

    ev = latest_evaluation(s, run.id)
    versions = [r.model_version for r, _ in lineage(s, run)] + [version]
    scores = {str(k): float(v) for k, v in (ev.scores if ev else {}).items() if isinstance(v, int | float)}
    base = {"version": version, "training_run_id": run.id, "tasks": list(run.tasks or []), "scores": scores}
    adapter_dir = Path(run.output_dir or "") / "adapter"
    if not run.output_dir or not adapter_dir.is_dir():
        problem = (f"the adapter of version {version} is not on this machine ({adapter_dir}): it was trained "
                   "elsewhere; MLflow's artifacts of the version hold it")  # fmt: skip
        return Champion(mode="unknown", problem=problem, **base), None, versions
    try:
        manifest = read_manifest(adapter_dir)
        router = _router(adapter_dir) if manifest is not None else None
    except (TrainingError, OSError, ValueError) as exc:
        return Champion(mode="unknown", problem=str(exc), **base), None, versions
    if manifest is None:
        shared = {"*": adapter_facts(adapter_dir, "shared")}
        return Champion(mode="shared", problem=None, adapters=shared, **base), None, versions
    adapters = {t: adapter_facts(adapter_path(adapter_dir, n), n) for t, n in manifest["adapters"].items()}
    champion = Champion(
        mode="per_task",
        problem=None,
        adapters=adapters,
        router_accuracy=router.accuracy if router else None,
        router_accuracy_by_task=dict(router.accuracy_by_task) if router else {},
        router_held_out=router.held_out if router else 0,
        **base,
    )
    return champion, router, versions


def _trend(ev: Evaluation | None, task: str, versions: list[str | None]) -> list[ScorePoint]:
    if ev is None or task not in (ev.tasks or []):
        return []
    j = list(ev.tasks).index(task)
    rows = list(ev.matrix or [])
    names = versions[-len(rows) :] if len(versions) >= len(rows) else [None] * (len(rows) - len(versions)) + versions
    return [ScorePoint(v, row[j] if j < len(row) else None) for v, row in zip(names, rows, strict=True)]


def _row(task: str, configured: list[str], data, champion: Champion, ev: Evaluation | None, versions) -> TaskRow:
    rows, last = data.get(task, (0, None))
    trend = _trend(ev, task, versions)
    learnt = [p.score for p in trend if p.score is not None]
    score = champion.scores.get(task)
    change = round(learnt[-1] - learnt[-2], 2) if len(learnt) >= 2 and score is not None else None
    facts: AdapterFacts | None = None
    if champion.mode == "per_task":
        facts = champion.adapters.get(task)
        kind = "own" if facts else "none"
    elif champion.mode == "shared":
        facts = champion.adapters.get("*")
        kind = "shared" if task in champion.tasks else "none"
    else:
        kind = "unknown"
    return TaskRow(
        task=task,
        configured=task in configured,
        curated_rows=rows,
        last_data_at=last,
        score=score,
        change=change,
        trend=trend,
        adapter=kind,
        adapter_name=facts.name if facts and kind != "none" else None,
        rank=facts.rank if facts and kind != "none" else None,
        size_bytes=facts.size_bytes if facts and kind != "none" else None,
        router_accuracy=champion.router_accuracy_by_task.get(task) if champion.mode == "per_task" else None,
    )


@dataclass
class _State:
    configured: list[str]
    data: dict[str, tuple[int, datetime | None]]
    champion: Champion
    router: TaskRouter | None
    evaluation: Evaluation | None
    versions: list[str | None]
    registry: str
    replay_record: dict
    """The newest succeeded run's replay record (``training_runs.strategies["replay"]``)."""

    @property
    def tasks(self) -> list[str]:
        every = dict.fromkeys(self.configured)
        every.update(dict.fromkeys(self.champion.tasks))
        every.update(dict.fromkeys(t for t in self.champion.adapters if t != "*"))
        every.update(dict.fromkeys(sorted(self.data)))
        return list(every)

    def row(self, task: str) -> TaskRow:
        return _row(task, self.configured, self.data, self.champion, self.evaluation, self.versions)


def read_state(cfg: ClmConfig) -> _State:
    """Everything the screen, the detail page and the impact analyses read, in one pass over the stores."""
    registry = registry_state(cfg)
    version = registry.champion.version if registry.champion else None
    status = registry.status if registry.status != "unreachable" else f"unreachable: {registry.message}"
    with reading(cfg.database_url) as s:
        champion, router, versions = champion_adapters(s, version)
        if registry.status == "unreachable":  # not "no champion": which one serves is unknown
            champion = Champion(None, None, "unknown", f"MLflow cannot be read: {registry.message}")
        ev = None
        if champion.training_run_id:
            from clm_lib.evaluation.evaluate import latest_evaluation

            ev = latest_evaluation(s, champion.training_run_id)
            if ev is not None:
                s.expunge(ev)
        last = s.scalars(
            select(TrainingRun).where(TrainingRun.status == "succeeded").order_by(TrainingRun.finished_at.desc())
        ).first()
        replay = dict((last.strategies or {}).get("replay") or {}) if last else {}
        data = _data_by_task(s)
        configured = configured_tasks(s, cfg)
    return _State(configured, data, champion, router, ev, versions, status, replay)


def list_tasks(cfg: ClmConfig) -> TasksOverview:
    state = read_state(cfg)
    return TasksOverview([state.row(t) for t in state.tasks], state.configured, state.champion, state.registry,
                         datetime.now(UTC))  # fmt: skip


def known(state: _State, task: str) -> None:
    if task not in state.tasks:
        raise UnknownTask(f"no task {task[:MAX_TASK]!r}: it is not in data.tasks, the champion has no adapter for it "
                          "and no curated data names it")  # fmt: skip


def get_task(cfg: ClmConfig, task: str) -> TaskRow:
    state = read_state(cfg)
    known(state, task)
    return state.row(task)
