"""Tasks, their adapters and router accuracy, and adding or removing one: ``/clm/api/v1/tasks...``.

The same functions as the Multi-task screen: :mod:`clm_lib.reporting.tasks` (the list and one task),
:mod:`clm_lib.reporting.task_impact` (what a removal or an addition would do, before anyone confirms) and
:mod:`clm_lib.airflow.task_changes` for the two mutations, which need the right to trigger ``clm_continual_training``
and are audited with the caller's reason. Unknown task: 404 naming it; a bad name or a missing reason: 422 naming
the field; a task that cannot be removed or a configuration edited since: 409; clm's database unreadable: 503.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, HTTPException, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from clm_api.deps import READ, ActorDep, ConfigDep, operate
from clm_api.v1.training import airflow_url, caller_token
from clm_lib.airflow.task_changes import TaskChange
from clm_lib.reporting import task_impact, tasks
from clm_lib.reporting.training import TRAINING_DAG

router = APIRouter(tags=["tasks"])

T = TypeVar("T")
Task = Annotated[str, Path(min_length=1, max_length=tasks.MAX_TASK, description="A task name (see GET /v1/tasks).")]
OPERATE_TRAINING = operate(TRAINING_DAG)
"""Adding or removing a task changes what ``clm_continual_training`` trains: the right to trigger it."""


def _problem(field: list[str], message: str) -> HTTPException:
    return HTTPException(422, [{"loc": field, "msg": message, "type": "value_error"}])


def _answer(call: Callable[[], T], name_at: list[str] | None = None) -> T:
    from clm_lib.airflow.dag_trigger import RunRefused, airflow_problem
    from clm_lib.config_store import ConfigChangeError, ConfigConflict
    from clm_lib.services.airflow_client import AirflowAPIError

    try:
        return call()
    except tasks.UnknownTask as exc:
        raise HTTPException(404, str(exc)) from None
    except task_impact.BadTaskName as exc:
        raise _problem(name_at or ["query", exc.field], str(exc)) from None
    except RunRefused as exc:
        raise _problem(["body", "reason"], str(exc)) from None
    except (task_impact.NotRemovable, ConfigConflict) as exc:
        raise HTTPException(409, str(exc)) from None
    except ConfigChangeError as exc:
        raise HTTPException(422, [{"loc": ["body", path], "msg": rule, "type": "value_error"}
                                  for path, rule in exc.problems]) from None  # fmt: skip
    except AirflowAPIError as exc:
        status, message = airflow_problem(exc, TRAINING_DAG)
        raise HTTPException(status, message) from None


class AddTaskRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64, description="The new task: letters, digits, '_', '.', '-'.")
    reason: str = Field(min_length=1, max_length=2000, pattern=r"\S",
                        description="Why: kept with the configuration revision and in the audit log.")  # fmt: skip
    base_revision: int | None = Field(None, ge=1, description="The configuration revision the impact was read "
                                      "from; a newer one makes this a 409. Default: the live one.")  # fmt: skip


class RemoveTaskRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=2000, pattern=r"\S",
                        description="Why: kept with the removal run, the revision and in the audit log.")  # fmt: skip


@router.get("/tasks", dependencies=READ, response_model=tasks.TasksOverview)
def list_tasks(cfg: ConfigDep) -> Any:
    """Every task (configured, learnt by the champion, or with curated data): its rows, last data, the champion's
    score and trend, its adapter (own or shared, rank, size) and the router's accuracy on it."""
    return tasks.list_tasks(cfg)


@router.get("/tasks/impact", dependencies=READ, response_model=task_impact.AdditionImpact)
def addition_impact(
    cfg: ConfigDep,
    add: Annotated[str, Query(min_length=1, max_length=200, description="The task you would add.")],
) -> Any:
    """What adding ``add`` to ``data.tasks`` would do: records of it already quarantined, each task's replay share
    before and after (estimated), the adapter that learns it. Changes nothing."""
    return _answer(lambda: task_impact.addition_impact(cfg, add))


@router.get("/tasks/{task}", dependencies=READ, response_model=tasks.TaskRow)
def get_task(cfg: ConfigDep, task: Task) -> Any:
    """One task as the list shows it."""
    return _answer(lambda: tasks.get_task(cfg, task))


@router.get("/tasks/{task}/impact", dependencies=READ, response_model=task_impact.RemovalImpact)
def removal_impact(cfg: ConfigDep, task: Task) -> Any:
    """What removing ``task`` would do to the others, measured (router held-out prompts, last scores, the replay
    buffer) and estimated (router refitted without it, replay shares after). Changes nothing."""
    return _answer(lambda: task_impact.removal_impact(cfg, task))


@router.post("/tasks", dependencies=OPERATE_TRAINING, response_model=TaskChange, status_code=201)
def add_task(cfg: ConfigDep, body: AddTaskRequest, actor: ActorDep) -> Any:
    """Add a task to ``data.tasks`` of the live configuration (a new revision, audited ``config.changed``)."""
    from clm_lib.airflow.task_changes import add_task as add

    return _answer(lambda: add(cfg, body.name, reason=body.reason, actor=actor, base_revision=body.base_revision),
                   name_at=["body", "name"])  # fmt: skip


@router.post("/tasks/{task}/remove", dependencies=OPERATE_TRAINING, response_model=TaskChange)
def remove_task(cfg: ConfigDep, task: Task, body: RemoveTaskRequest, actor: ActorDep, request: Request) -> Any:
    """Trigger ``clm_continual_training`` with ``{"remove_task": task}`` as the caller (their token: Airflow's RBAC
    applies; audited ``task.remove_requested``) and drop the task from ``data.tasks``. The run makes a candidate
    without the task's adapter; the promotion gate decides whether it serves."""
    from clm_lib.airflow.task_changes import remove_task as remove

    return _answer(lambda: remove(cfg, task, airflow_url=airflow_url(request), token=caller_token(request),
                                  reason=body.reason, actor=actor))  # fmt: skip
