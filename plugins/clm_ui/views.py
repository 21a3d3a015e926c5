"""clm's Flask-AppBuilder views, served by the FAB provider under ``/pluginsv2/clm/`` in Airflow 3.3.

Views hold no business logic: they load the config, call :mod:`clm_lib.reporting` (or, for the one action, the
same :func:`~clm_lib.deploy.rollback.rollback` as the CLI, the REST API and the ``clm_rollback`` DAG), and render.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from flask import Blueprint, redirect, render_template, request, url_for
from flask_appbuilder import BaseView, expose

from clm_lib.config import load_config
from clm_lib.errors import ClmError, DeployError, ServingError
from clm_lib.reporting import build_drift, build_overview, build_serving
from clm_ui import ROUTE_BASE, csrf
from clm_ui.auth import READ, current_user, operate, requires
from clm_ui.display import HELPERS

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent

# FAB creates view blueprints with ``__name__`` of flask_appbuilder, so a relative template folder would be
# looked up inside FAB's package: give an absolute one. Templates are namespaced under ``clm/``.
TEMPLATES = str(HERE / "templates")

static_blueprint = Blueprint(
    "clm_ui", __name__, static_folder=str(HERE / "static"), static_url_path=f"{ROUTE_BASE}/static"
)
"""Serves the plugin's CSS and icon from this package (no CDN). FAB's ``add_view_no_menu`` has no static folder."""


def _airflow_root() -> str:
    # The FAB app is mounted at <base path>/pluginsv2; links to Airflow's own pages go to <base path>/.
    return request.script_root.removesuffix("/pluginsv2")


def _page(template: str, status: int = 200, **context):
    user = current_user()
    return (
        render_template(
            template,
            user_name=user.get_name() if user else None,
            airflow_root=_airflow_root(),
            **HELPERS,
            **context,
        ),
        status,
    )


def _built(page: str, build, template: str, status: int = 200, **context):
    """Render ``template`` with what ``build(cfg)`` computed, or a problem page that shows no traceback."""
    try:
        data = build(load_config())
    except ClmError as exc:
        return _page("clm/problem.html", 500, crumb=page.title(), title="clm's configuration is invalid",
                     message=str(exc))  # fmt: skip
    except Exception:  # the page must never show a traceback; the log has it
        log.exception("clm %s page failed", page)
        return _page(
            "clm/problem.html",
            500,
            crumb=page.title(),
            title=f"The {page} page could not be built",
            message="An unexpected error occurred; the Airflow api-server log has the details.",
        )
    return _page(template, status, o=data, **context)


class OverviewView(BaseView):
    """Continual learning → Overview: serving models, candidates, forgetting matrix, last data, audit."""

    route_base = ROUTE_BASE
    template_folder = TEMPLATES
    default_view = "overview"

    @expose("/")
    @requires(READ)
    def overview(self):
        return _built("overview", build_overview, "clm/overview.html")


class DriftView(BaseView):
    """Continual learning → Drift: the last check's decision, each detector over time, alerts and what they started."""

    route_base = ROUTE_BASE
    template_folder = TEMPLATES
    default_view = "drift"

    @expose("/drift")
    @requires(READ)
    def drift(self):
        return _built("drift", build_drift, "clm/drift.html")


ROLLBACK_DAG = "clm_rollback"
MAY_ROLL_BACK = operate(ROLLBACK_DAG)
"""Rolling back from the screen takes what triggering the ``clm_rollback`` DAG takes: it does the same."""
_VERSION = re.compile(r"[0-9]{1,32}")
MAX_REASON = 2000
UNEXPECTED = (
    "The rollback failed unexpectedly; the Airflow api-server log has the details. "
    "Check what serves below before trying again."
)


class ServingView(BaseView):
    """Continual learning → Serving: the slots and their traffic, the deployment under way or the last one step by
    step, the deployment history, and the one-click rollback."""

    route_base = ROUTE_BASE
    template_folder = TEMPLATES
    default_view = "serving"

    @expose("/serving")
    @requires(READ)
    def serving(self):
        return self._render(focus=request.args.get("rolled_back", type=int))

    @expose("/serving/rollback", methods=["GET", "POST"])
    @requires(MAY_ROLL_BACK)
    def rollback(self):
        if request.method == "GET":  # back from the login page after a POST: nothing to do but show the page
            return redirect(url_for("ServingView.serving"))
        from clm_lib.deploy.rollback import rollback as do_rollback

        user = current_user()
        form = {"reason": request.form.get("reason", "").strip(), "to_version": request.form.get("to_version", "")}
        problem = _refusal(user, form)
        if problem is None:
            try:
                result = do_rollback(load_config(), form["to_version"] or None, actor=f"airflow:{user.get_name()}",
                                     reason=form["reason"])  # fmt: skip
            except ClmError as exc:
                problem = str(exc), _status(exc)
            except Exception:  # no traceback on the page; the log has it
                log.exception("clm rollback by %s failed", user.get_name())
                problem = UNEXPECTED, 500
            else:
                # Post/redirect/get: a reload shows the result instead of rolling back again.
                return redirect(url_for("ServingView.serving", rolled_back=result.deployment_id), code=303)
        message, status = problem
        return self._render(status, rollback_problem=message, form=form)

    def _render(self, status: int = 200, focus: int | None = None, **context):
        user = current_user()
        may = MAY_ROLL_BACK.allows(user)
        return _built("serving", lambda cfg: build_serving(cfg, focus=focus), "clm/serving.html", status,
                      may_roll_back=may, csrf_field=csrf.FIELD, form_token=csrf.form_token(user) if may else None,
                      **context)  # fmt: skip


def _refusal(user, form: dict[str, str]) -> tuple[str, int] | None:
    forged = csrf.refusal(user)
    if forged:
        log.warning("clm rollback by %s refused: %s", user.get_name(), forged)
        return f"Refused: {forged}.", 403
    if not form["reason"]:
        return "Say why you roll back: the reason goes into the audit log with your name.", 400
    if len(form["reason"]) > MAX_REASON:
        return f"The reason is longer than {MAX_REASON} characters.", 400
    if form["to_version"] and not _VERSION.fullmatch(form["to_version"]):
        return f"{form['to_version']!r} is not a model version number.", 400
    return None


def _status(exc: ClmError) -> int:
    """As the REST API answers: 409 when the state forbids it (busy, no previous version), 503 when serving fails."""
    return 409 if isinstance(exc, DeployError) else 503 if isinstance(exc, ServingError) else 500


def _exempt_from_session_csrf() -> None:
    # Flask-WTF's CSRFProtect would reject the POST before the view runs; clm_ui.csrf checks it instead
    # (that module says why a session-backed token cannot be used under /pluginsv2).
    from airflow.providers.fab.www.app import csrf as fab_csrf

    fab_csrf.exempt(ServingView.rollback)


_exempt_from_session_csrf()
