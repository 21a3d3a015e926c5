"""The Multi-task screen under ``/pluginsv2/clm/tasks``: tasks, their adapters and router accuracy, and adding or
removing a task with the impact on the others shown before confirming.

Thin like the other views: the list, one task with its removal impact and the addition preview are
:mod:`clm_lib.reporting.tasks` / :mod:`clm_lib.reporting.task_impact`, the functions behind ``/clm/api/v1/tasks``.
The two actions are :mod:`clm_lib.airflow.task_changes` as the REST routes call them: only someone who may trigger
``clm_continual_training`` sees the forms, a POST from anyone else is refused before anything happens, every POST
carries clm's form token (:mod:`clm_ui.csrf`) and a reason, and each lands in the audit log with the caller's name.
"""

from __future__ import annotations

import logging

from flask import redirect, request, url_for
from flask_appbuilder import BaseView, expose

from clm_lib.airflow.settings import resolve_config
from clm_lib.errors import ClmError
from clm_lib.reporting import task_impact, tasks
from clm_lib.reporting.training import TRAINING_DAG
from clm_ui import ROUTE_BASE, csrf
from clm_ui.auth import READ, current_user, operate, request_token, requires
from clm_ui.page import TEMPLATES, airflow_api, airflow_root, built, exempt_from_session_csrf, page

log = logging.getLogger(__name__)

MAY_CHANGE = operate(TRAINING_DAG)
"""Adding or removing a task changes what ``clm_continual_training`` trains: the right to trigger it."""


class TasksView(BaseView):
    """Continual learning → Multi-task."""

    route_base = ROUTE_BASE
    template_folder = TEMPLATES
    default_view = "tasks"

    @expose("/tasks")
    @requires(READ)
    def tasks(self):
        return built("multi-task", tasks.list_tasks, "clm/tasks.html", crumb="Multi-task", **self._common(),
                      added=request.args.get("added"), revision=request.args.get("revision"))  # fmt: skip

    @expose("/tasks/add")
    @requires(READ)
    def add_preview(self):
        return self._add_page(200, name=request.args.get("name", ""))

    @expose("/tasks/add/confirm", methods=["GET", "POST"])
    @requires(MAY_CHANGE)
    def add_confirm(self):
        if request.method == "GET":  # back from the login page after a POST: show the list
            return redirect(url_for("TasksView.tasks"))
        from clm_lib.airflow.task_changes import add_task

        form = _form("name", "reason", "base_revision")
        base = int(form["base_revision"]) if form["base_revision"].isdigit() else None
        done, problem = self._act(lambda cfg, actor: add_task(cfg, form["name"], reason=form["reason"], actor=actor,
                                                              base_revision=base))  # fmt: skip
        if done is not None:
            return redirect(url_for("TasksView.tasks", added=done.task, revision=done.revision), code=303)
        message, status = problem
        if not task_impact.NAME.fullmatch(form["name"]):  # no preview to go back to: say what is wrong
            return page("clm/problem.html", status, crumb="Multi-task", title="Nothing was changed", message=message)
        return self._add_page(status, name=form["name"], problem=message, form=form)

    @expose("/tasks/<task>")
    @requires(READ)
    def task(self, task: str):
        return self._task_page(200, task, requested=request.args.get("requested"),
                               revision=request.args.get("revision"))  # fmt: skip

    @expose("/tasks/<task>/remove", methods=["GET", "POST"])
    @requires(MAY_CHANGE)
    def remove(self, task: str):
        if request.method == "GET":
            return redirect(url_for("TasksView.task", task=task))
        from clm_lib.airflow.task_changes import remove_task

        form = _form("reason")
        token, _ = request_token()
        done, problem = self._act(lambda cfg, actor: remove_task(cfg, task, airflow_url=airflow_api(),
                                                                 token=token or "", reason=form["reason"],
                                                                 actor=actor))  # fmt: skip
        if done is not None:
            return redirect(url_for("TasksView.task", task=task, requested=done.dag_run_id, revision=done.revision),
                            code=303)  # fmt: skip
        message, status = problem
        return self._task_page(status, task, problem=message, form=form)

    # --- helpers ----------------------------------------------------------------------------------------------

    @staticmethod
    def _common() -> dict:
        user = current_user()
        may = MAY_CHANGE.allows(user)
        return {"may_change": may, "csrf_field": csrf.FIELD, "form_token": csrf.form_token(user) if may else None,
                "api": f"{airflow_root()}/clm/api/v1", "dag_url": f"{airflow_root()}/dags/{TRAINING_DAG}",
                "strategy_url": f"{request.script_root}{ROUTE_BASE}/strategy"}  # fmt: skip

    def _task_page(self, status: int, task: str, **context):
        def build(cfg):
            state = tasks.read_state(cfg)
            tasks.known(state, task)
            return {"row": state.row(task), "impact": task_impact.removal_impact(cfg, task, state),
                    "champion": state.champion}  # fmt: skip

        return built("task", build, "clm/task.html", status, crumb="Multi-task", task=task, **self._common(),
                      **context)  # fmt: skip

    def _add_page(self, status: int, name: str, **context):
        if not name.strip():
            return redirect(url_for("TasksView.tasks"))
        try:
            impact = task_impact.addition_impact(resolve_config(), name)
        except task_impact.BadTaskName as exc:
            return page("clm/problem.html", 422, crumb="Multi-task", title=f"Field {exc.field}: not a new task name",
                         message=str(exc))  # fmt: skip
        except Exception:  # _built computes it again and says which store is down, without a traceback
            impact = None
        build = (lambda cfg: impact) if impact is not None else (lambda cfg: task_impact.addition_impact(cfg, name))
        return built("add task", build, "clm/task_add.html", status, crumb="Multi-task", **self._common(), **context)

    @staticmethod
    def _act(call):
        """``(result, None)`` or ``(None, (message, status))``: refused forgeries, refusals and failures alike."""
        from clm_lib.airflow.dag_trigger import RunRefused, airflow_problem
        from clm_lib.config_store import ConfigChangeError, ConfigConflict
        from clm_lib.reporting.stores import StoreDown
        from clm_lib.services.airflow_client import AirflowAPIError

        user = current_user()
        forged = csrf.refusal(user)
        if forged:
            log.warning("clm task change by %s refused: %s", user.get_name(), forged)
            return None, (f"Refused: {forged}.", 403)
        try:
            return call(resolve_config(), f"airflow:{user.get_name()}"), None
        except tasks.UnknownTask as exc:
            return None, (str(exc), 404)
        except (task_impact.BadTaskName, RunRefused, ConfigChangeError) as exc:
            return None, (f"{str(exc)[0].upper()}{str(exc)[1:]}.", 400)
        except (task_impact.NotRemovable, ConfigConflict) as exc:
            return None, (str(exc), 409)
        except AirflowAPIError as exc:
            status, message = airflow_problem(exc, TRAINING_DAG)
            return None, (message, status)
        except (StoreDown, ClmError) as exc:
            return None, (str(exc), 503)
        except Exception:  # no traceback on the page; the log has it
            log.exception("clm task change by %s failed", user.get_name())
            return None, ("The request failed unexpectedly; the Airflow api-server log has the details.", 500)


def _form(*names: str) -> dict[str, str]:
    return {n: request.form.get(n, "").strip()[:2000] for n in names}


exempt_from_session_csrf(TasksView.add_confirm, TasksView.remove)
