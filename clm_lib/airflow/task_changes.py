"""An operator adds a task or removes one (the Multi-task screen and ``POST /clm/api/v1/tasks...``), with a reason.

- Add: ``data.tasks`` of the live configuration gets the name, as a new configuration revision
  (:func:`clm_lib.config_store.commit_change`, audited ``config.changed``). Records of it stop being quarantined;
  its adapter is trained at the next update that brings its data.
- Remove: ``clm_continual_training`` is triggered with ``{"remove_task": task}`` through Airflow's REST API with the
  caller's token (:func:`clm_lib.airflow.dag_trigger.request_run`, audited ``task.remove_requested``). That run never
  changes a registered model: it makes a new candidate without the task's adapter, which the gate judges like any
  other. With the same reason, ``data.tasks`` loses the task at once (a new revision), so its new records are
  quarantined instead of bringing its adapter back at the next update.

Nothing is asked of Airflow or stored when the request is refused (bad name, no reason, the task cannot be removed).
"""

from __future__ import annotations

from dataclasses import dataclass

from clm_lib.airflow.dag_trigger import checked_reason, request_run
from clm_lib.config import ClmConfig
from clm_lib.db import session_scope
from clm_lib.reporting.stores import DATABASE, down, missing_sqlite
from clm_lib.reporting.task_impact import NotRemovable, check_new_name, removal_blockers
from clm_lib.reporting.tasks import known, read_state
from clm_lib.reporting.training import TRAINING_DAG

REMOVE_ACTION = "task.remove_requested"


@dataclass(frozen=True)
class TaskChange:
    """What an add or a remove did."""

    task: str
    dag_run_id: str | None
    """The Airflow run of ``clm_continual_training`` that makes the candidate without the task (remove only)."""
    revision: int | None
    """The configuration revision whose ``data.tasks`` has the change (None: data.tasks did not list the task)."""
    data_tasks: list[str]
    """``data.tasks`` after the change."""


def _database(cfg: ClmConfig) -> None:
    missing = missing_sqlite(cfg.database_url)
    if missing:
        raise down(DATABASE, f"there is no database at {missing} yet; `clm init` creates it")


def _commit_tasks(cfg: ClmConfig, tasks: list[str], *, base_revision: int | None, actor: str, reason: str) -> int:
    from clm_lib.config_store import commit_change, live_revision

    with session_scope(cfg.database_url) as s:
        live = live_revision(s, cfg)
        base = live.number if base_revision is None else base_revision
        revision = commit_change(s, file_cfg=cfg, changes={"data.tasks": tasks}, base_revision=base, actor=actor,
                                 reason=reason)  # fmt: skip
        return revision.number


def add_task(cfg: ClmConfig, name: str, *, reason: str, actor: str, base_revision: int | None = None) -> TaskChange:
    """Add ``name`` to ``data.tasks`` as a new configuration revision. Raises
    :class:`~clm_lib.reporting.task_impact.BadTaskName`, :class:`~clm_lib.airflow.dag_trigger.RunRefused` (reason),
    :class:`~clm_lib.config_store.ConfigConflict` (``base_revision`` is no longer live)."""
    reason = checked_reason(reason)
    _database(cfg)
    configured = read_state(cfg).configured
    task = check_new_name(name, configured, "name")
    tasks = [*configured, task]
    number = _commit_tasks(cfg, tasks, base_revision=base_revision, actor=actor, reason=reason)
    return TaskChange(task, None, number, tasks)


def remove_task(cfg: ClmConfig, task: str, *, airflow_url: str, token: str, reason: str, actor: str) -> TaskChange:
    """Trigger the removal run as the holder of ``token``, then drop ``task`` from ``data.tasks``. Raises
    :class:`~clm_lib.reporting.tasks.UnknownTask`, :class:`~clm_lib.reporting.task_impact.NotRemovable`,
    :class:`~clm_lib.airflow.dag_trigger.RunRefused` and, when Airflow refuses,
    :class:`~clm_lib.services.airflow_client.AirflowAPIError` (then nothing changed)."""
    reason = checked_reason(reason)
    _database(cfg)
    state = read_state(cfg)
    known(state, task)
    blockers = removal_blockers(state, task)
    if task in state.configured and len(state.configured) == 1:
        blockers.append(f"{task} is the only task in data.tasks, which needs at least one")
    if blockers:
        raise NotRemovable("; ".join(blockers))
    run_id = request_run(cfg, TRAINING_DAG, {"remove_task": task}, airflow_url=airflow_url, token=token,
                         reason=reason, actor=actor, action=REMOVE_ACTION)  # fmt: skip
    tasks = [t for t in state.configured if t != task]
    revision = None
    if task in state.configured:
        revision = _commit_tasks(cfg, tasks, base_revision=None, actor=actor, reason=reason)
    return TaskChange(task, run_id, revision, tasks)
