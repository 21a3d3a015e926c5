"""What removing a task, or adding one, would do to the others: shown before an operator confirms.

Cheap enough for a web request: no model is loaded. Every figure says whether it is *measured* (read from what the
pipeline recorded: the router's held-out prompts, the last evaluation, the replay buffer the last run wrote) or
*estimated* (what the next run is expected to do, computed from those and the config).

- Remove: which other tasks' held-out prompts the champion's router sends to the removed task's adapter (measured on
  the router's saved memory, the split it was fitted with), where the removed task's own prompts go once the router
  is refitted without it (the refit the removal run makes, on the same memory: estimated, the answers are not
  scored), the router's accuracy before and after, how the removed task's replay share is shared out among the others
  (``training.replay``), and the remaining tasks' current scores. The removal run measures the scores after.
- Add: the name checked as ``data.tasks`` would check it, records of it already quarantined (``unknown_task``), how
  each task's replay share changes once it brings data, and which adapter learns it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

import pyarrow.compute as pc
from pydantic import ValidationError

from clm_lib.config import ClmConfig, DataConfig
from clm_lib.errors import ClmError
from clm_lib.modeling.router import TaskRouter
from clm_lib.modeling.task_adapters import adapter_name, routing_counts
from clm_lib.reporting.tasks import _State, known, read_state

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
"""A new task's name: it becomes part of URLs, adapter names and file paths, so plain characters only."""
RESERVED = {"impact", "add"}
"""Words the task routes use after ``/tasks/``."""


class BadTaskName(ClmError):
    """The proposed task name is not acceptable; ``field`` names the input."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(message)


class NotRemovable(ClmError):
    """The task exists, but the champion gives no adapter of its own to take out."""


@dataclass(frozen=True)
class Routed:
    """Held-out prompts of one task and the adapter the router picks for them."""

    task: str
    prompts: int
    """Its held-out remembered prompts (measured)."""
    to_removed: int
    """Of those, sent to the removed task's adapter by the champion's router now (measured)."""
    share: float
    """``to_removed / prompts`` (0-1)."""


@dataclass(frozen=True)
class ReplayShare:
    """One task's part of what is replayed from the buffer."""

    task: str
    buffer_records: int
    """In the buffer the last run wrote (measured)."""
    weight: float
    """Its replay weight: configured, else as the last run used it."""
    share_before: float
    """Share 0-100 of replayed examples now (``n*w / sum(n*w)``, measured from the buffer)."""
    share_after: float
    """Share 0-100 after the change (estimated)."""


@dataclass(frozen=True)
class ReplayChange:
    enabled: bool
    policy: str
    mix_ratio: float
    buffer_size: int
    shares: list[ReplayShare]
    note: str
    """How the after-shares were estimated."""


@dataclass(frozen=True)
class RemovalImpact:
    """Removing ``task`` from the champion's adapters, as far as it can be known before the removal run."""

    task: str
    adapter: str | None
    champion_version: str | None
    removable: bool
    blockers: list[str]
    """Why it cannot be removed (then nothing is triggered)."""
    routed_to_removed: list[Routed]
    """Measured: other tasks' held-out prompts the router sends to the removed adapter now."""
    removed_prompts_go_to: dict[str, int]
    """Estimated: the removed task's held-out prompts, by the task the refitted router sends them to."""
    router_accuracy_before: float | None
    """Measured (0-1), on the router's held-out prompts."""
    router_accuracy_after: float | None
    """Estimated (0-1): the router refitted without the task on its saved memory, on its held-out prompts."""
    scores: dict[str, float]
    """Measured: the champion's latest accuracy (0-100) on each remaining task. The removal run scores them again."""
    replay: ReplayChange
    data_tasks_after: list[str]
    """``data.tasks`` once the confirmation drops it: its records are quarantined from then on."""
    routing_basis: Literal["router memory", "none"]
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class AdditionImpact:
    """Adding ``task`` to ``data.tasks``."""

    task: str
    quarantined: int | None
    """Measured: records of this task already in quarantine (None: the lake could not be read, see ``notes``)."""
    quarantined_by_reason: dict[str, int]
    curated_rows: int
    """Measured: rows curated for it before (a task that was configured once)."""
    adapter: str
    """Estimated: what learns it at the next update that brings its data."""
    replay: ReplayChange
    data_tasks_after: list[str]
    notes: list[str] = field(default_factory=list)


def _replay(cfg: ClmConfig, state: _State, drop: str | None = None, add: str | None = None) -> ReplayChange:
    r = cfg.training.replay
    counts = {str(t): int(n) for t, n in (state.replay_record.get("buffer_tasks_after") or {}).items()
              if isinstance(n, int)}  # fmt: skip
    used = state.replay_record.get("task_weights") or {}
    weights = {t: float(r.task_weights.get(t, used.get(t, 1.0))) for t in counts}

    def shares(n: dict[str, int]) -> dict[str, float]:
        mass = {t: c * weights.get(t, 1.0) for t, c in n.items()}
        total = sum(mass.values())
        return {t: round(100 * m / total, 1) if total else 0.0 for t, m in mass.items()}

    after = dict(counts)
    if drop is not None:
        after.pop(drop, None)
        note = (f"{drop}'s {counts.get(drop, 0)} buffer records leave the buffer in the removal run; the others keep "
                "theirs and share the replay by records x weight")  # fmt: skip
        if r.policy == "task_balanced" and after:
            note += f"; at later refills each gets up to {r.buffer_size // len(after)} of {r.buffer_size} records"
    elif add is not None:
        k = len(counts) + 1
        quota = r.buffer_size // k
        if r.policy == "task_balanced":
            after = {t: min(c, quota) for t, c in counts.items()} | {add: quota}
            note = (f"task_balanced: once {add} brings data, the refill gives each of {k} tasks up to {quota} of "
                    f"{r.buffer_size} records (assumed: it brings at least that many; weight 1)")  # fmt: skip
        else:
            note = f"reservoir: {add} gets a share in proportion to the records it brings; until then nothing changes"
    else:
        note = ""
    if not r.enabled:
        note = "replay is off (training.replay.enabled: false): nothing is replayed before or after"
    before, later = shares(counts), shares(after)
    rows = [ReplayShare(t, counts.get(t, 0), weights.get(t, 1.0), before.get(t, 0.0), later.get(t, 0.0))
            for t in dict.fromkeys([*counts, *after])]  # fmt: skip
    return ReplayChange(r.enabled, r.policy, r.mix_ratio, r.buffer_size, rows, note)


def removal_blockers(state: _State, task: str) -> list[str]:
    c = state.champion
    if c.version is None or c.mode == "unknown":
        return [f"the champion's adapters cannot be read: {c.problem}"]
    if c.mode == "shared":
        return [f"version {c.version} answers every task with one shared adapter: there is no adapter of {task}'s "
                "own to take out (training.adapters.mode: shared)"]  # fmt: skip
    if task not in c.adapters:
        return [f"version {c.version} has no adapter for {task}"]
    if len(c.adapters) == 1:
        return [f"{task} has the only adapter of version {c.version}: removing it would leave no model"]
    return []


def _routing(router: TaskRouter | None, task: str) -> tuple[list[Routed], dict[str, int], float | None]:
    if router is None or task not in router.tasks or len(router.tasks) < 2:
        return [], {}, None
    now = routing_counts(router)
    routed = [Routed(t, sum(row.values()), row.get(task, 0), round(row.get(task, 0) / sum(row.values()), 4))
              for t, row in now.items() if t != task and sum(row.values())]  # fmt: skip
    refit = TaskRouter.fit({}, previous=router, drop=[task], **router.settings)
    # The refit keeps every other task's rows and keys, so it holds out the same prompts of theirs.
    later = routing_counts(router, predictor=refit)
    return routed, dict(later.get(task, {})), refit.accuracy


def removal_impact(cfg: ClmConfig, task: str, state: _State | None = None) -> RemovalImpact:
    state = state or read_state(cfg)
    known(state, task)
    c = state.champion
    blockers = removal_blockers(state, task)
    routed, goes_to, after = _routing(state.router, task) if not blockers else ([], {}, None)
    notes = []
    if not blockers and state.router is None:
        notes.append("the champion saved no router: every prompt names its task, nothing is routed")
    if task in state.configured and len(state.configured) == 1:
        blockers.append(f"{task} is the only task in data.tasks, which needs at least one")
    remaining = [t for t in (c.tasks or state.tasks) if t != task]
    return RemovalImpact(
        task=task,
        adapter=c.adapters[task].name if task in c.adapters else None,
        champion_version=c.version,
        removable=not blockers,
        blockers=blockers,
        routed_to_removed=routed,
        removed_prompts_go_to=goes_to,
        router_accuracy_before=c.router_accuracy,
        router_accuracy_after=after,
        scores={t: c.scores[t] for t in remaining if t in c.scores},
        replay=_replay(cfg, state, drop=task),
        data_tasks_after=[t for t in state.configured if t != task],
        routing_basis="router memory" if routed or goes_to else "none",
        notes=notes,
    )


def check_new_name(name: str | None, configured: list[str], field_name: str = "add") -> str:
    """``name`` as a new task, or :class:`BadTaskName` naming ``field_name`` and what is wrong."""
    name = (name or "").strip()
    if not NAME.fullmatch(name):
        raise BadTaskName(field_name, "a task name is 1-64 letters, digits, '_', '.' or '-', starting with a letter "
                          f"or digit; got {name[:80]!r}")  # fmt: skip
    if name.lower() in RESERVED:
        raise BadTaskName(field_name, f"{name!r} is reserved by the task routes; pick another name")
    if name in configured:
        raise BadTaskName(field_name, f"{name!r} is already in data.tasks")
    try:
        DataConfig.model_validate({"tasks": [*configured, name]})
    except ValidationError as exc:
        raise BadTaskName(field_name, f"data.tasks would be invalid: {exc.errors()[0]['msg']}") from None
    return name


def _quarantined(cfg: ClmConfig, task: str) -> tuple[int | None, dict[str, int], str | None]:
    from clm_lib.data import lake

    try:
        rows = lake.read_table(cfg, "quarantine", columns=["reason"], where=pc.field("task") == task)
    except Exception as exc:  # a lake that cannot be read is a state of the preview, not an error
        return None, {}, f"the quarantine table cannot be read: {str(exc).splitlines()[0][:200]}"
    reasons: dict[str, int] = {}
    for reason in rows.column("reason").to_pylist():
        reasons[reason] = reasons.get(reason, 0) + 1
    return rows.num_rows, reasons, None


def addition_impact(cfg: ClmConfig, name: str | None, state: _State | None = None) -> AdditionImpact:
    state = state or read_state(cfg)
    task = check_new_name(name, state.configured)
    quarantined, reasons, problem = _quarantined(cfg, task)
    notes = [problem] if problem else []
    if quarantined:
        notes.append(f"the {quarantined} quarantined records stay in quarantine: land their files again once the "
                     "task is added to ingest them")  # fmt: skip
    if cfg.training.adapters.mode == "per_task":
        adapter = f"a new adapter {adapter_name(task)} is trained at the next update that brings {task}'s data"
    else:
        adapter = f"the shared adapter learns {task} at the next update that brings its data"
    return AdditionImpact(
        task=task,
        quarantined=quarantined,
        quarantined_by_reason=reasons,
        curated_rows=state.data.get(task, (0, None))[0],
        adapter=adapter,
        replay=_replay(cfg, state, add=task),
        data_tasks_after=[*state.configured, task],
        notes=notes,
    )
