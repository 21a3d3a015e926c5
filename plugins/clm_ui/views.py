"""clm's Flask-AppBuilder views, served by the FAB provider under ``/pluginsv2/clm/`` in Airflow 3.3.

Views hold no business logic: they resolve the config as the tasks do (:func:`clm_lib.airflow.settings.resolve_config`:
file, environment, ``clm_default`` connection), call :mod:`clm_lib.reporting` (or, for the one action, the same
:func:`~clm_lib.deploy.rollback.rollback` as the CLI, the REST API and the ``clm_rollback`` DAG), and render.
"""

from __future__ import annotations

import logging
import re

from flask import Blueprint, g, redirect, request, url_for
from flask_appbuilder import BaseView, expose

from clm_lib.airflow.settings import resolve_config
from clm_lib.errors import ClmError, DeployError, ServingError
from clm_lib.reporting import build_drift, build_overview, build_serving
from clm_lib.reporting.stores import StoreDown
from clm_ui import ROUTE_BASE, SCREENS, csrf
from clm_ui.auth import READ, current_user, operate, requires
from clm_ui.page import HERE, TEMPLATES, airflow_api, airflow_root, built, exempt_from_session_csrf, int_arg

log = logging.getLogger(__name__)


static_blueprint = Blueprint(
    "clm_ui", __name__, static_folder=str(HERE / "static"), static_url_path=f"{ROUTE_BASE}/static"
)
"""Serves the plugin's CSS and icon from this package (no CDN). FAB's ``add_view_no_menu`` has no static folder."""


@static_blueprint.app_context_processor
def nav_context() -> dict:
    """The tab bar of every clm page (``clm/base.html``): each screen of :data:`clm_ui.SCREENS` by group, the one
    shown marked. A page that belongs to a screen without being it (a version report) sets ``g.clm_tab``."""
    if not request or not request.path.startswith(ROUTE_BASE):
        return {}
    here = g.get("clm_tab") or request.path[len(ROUTE_BASE) :] or "/"
    root = request.script_root + ROUTE_BASE
    groups: dict[str, list[tuple[str, str, bool]]] = {}
    for path, _name, _route, _icon, _top, group, tab in SCREENS:
        active = here == path or (path != "/" and here.startswith(path + "/"))
        groups.setdefault(group, []).append((root + path, tab, active))
    return {"clm_tabs": list(groups.items())}


class OverviewView(BaseView):
    """Continual learning → Overview: serving models, candidates, forgetting matrix, last data, audit."""

    route_base = ROUTE_BASE
    template_folder = TEMPLATES
    default_view = "overview"

    @expose("/")
    @requires(READ)
    def overview(self):
        return built("overview", build_overview, "clm/overview.html")


class DriftView(BaseView):
    """Continual learning → Drift: the last check's decision, each detector over time, alerts and what they started."""

    route_base = ROUTE_BASE
    template_folder = TEMPLATES
    default_view = "drift"

    @expose("/drift")
    @requires(READ)
    def drift(self):
        return built("drift", build_drift, "clm/drift.html")


ROLLBACK_DAG = "clm_rollback"
MAY_ROLL_BACK = operate(ROLLBACK_DAG)
"""Rolling back from the screen takes what triggering the ``clm_rollback`` DAG takes: it does the same."""
_VERSION = re.compile(r"[0-9]{1,32}")
MAX_REASON = 2000
UNEXPECTED = (
    "The rollback failed unexpectedly; the Airflow api-server log has the details. "
    "Check what serves below before trying again."
)
PROMOTION_DAG = "clm_promotion"
MAY_PROMOTE = operate(PROMOTION_DAG)
"""Promoting from the screen triggers ``clm_promotion`` as the caller: it takes what triggering that DAG takes."""


class ServingView(BaseView):
    """Continual learning → Serving: the slots and their traffic, the deployment under way or the last one step by
    step, the deployment history, the next promotion's plan with a promote button per registered version, and the
    one-click rollback."""

    route_base = ROUTE_BASE
    template_folder = TEMPLATES
    default_view = "serving"

    @expose("/serving")
    @requires(READ)
    def serving(self):
        requested = {k: request.args.get(k) for k in ("promotion_requested", "version")}
        return self._render(focus=request.args.get("rolled_back", type=int),
                            requested=requested if requested["promotion_requested"] else None)  # fmt: skip

    @expose("/serving/promote", methods=["GET", "POST"])
    @requires(MAY_PROMOTE)
    def promote(self):
        if request.method == "GET":  # back from the login page after a POST: nothing to do but show the page
            return redirect(url_for("ServingView.serving"))
        from clm_lib.airflow.dag_trigger import RunRefused
        from clm_lib.airflow.promote import airflow_problem, request_promotion
        from clm_lib.reporting.next_promotion import UnknownVersion
        from clm_lib.services.airflow_client import AirflowAPIError
        from clm_ui.auth import request_token

        user = current_user()
        form = {"reason": request.form.get("reason", "").strip(), "version": request.form.get("version", "")}
        problem = _refusal(user, {"reason": form["reason"], "to_version": form["version"]}, "promote")
        if problem is None and not form["version"]:
            problem = "Choose the version to promote.", 400
        if problem is None:
            token, _ = request_token()
            try:
                run_id = request_promotion(resolve_config(), form["version"], airflow_url=airflow_api(),
                                           token=token or "", reason=form["reason"],
                                           actor=f"airflow:{user.get_name()}")  # fmt: skip
            except RunRefused as exc:
                problem = f"{str(exc)[0].upper()}{str(exc)[1:]}.", 400
            except UnknownVersion as exc:
                problem = f"{exc}.", 404
            except AirflowAPIError as exc:
                code, message = airflow_problem(exc)
                problem = message, code
            except ClmError as exc:
                problem = str(exc), 503 if isinstance(exc, StoreDown) else _status(exc)
            except Exception:  # no traceback on the page; the log has it
                log.exception("clm promotion request by %s failed", user.get_name())
                problem = "The request failed unexpectedly; the Airflow api-server log has the details.", 500
            else:
                return redirect(url_for("ServingView.serving", promotion_requested=run_id, version=form["version"]),
                                code=303)  # fmt: skip
        message, status = problem
        return self._render(status, promote_problem=message, promote_form=form)

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
                result = do_rollback(resolve_config(), form["to_version"] or None, actor=f"airflow:{user.get_name()}",
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
        may, may_promote = MAY_ROLL_BACK.allows(user), MAY_PROMOTE.allows(user)
        return built("serving", lambda cfg: build_serving(cfg, focus=focus), "clm/serving.html", status,
                      may_roll_back=may, may_promote=may_promote, csrf_field=csrf.FIELD,
                      form_token=csrf.form_token(user) if may or may_promote else None, **context)  # fmt: skip


def _refusal(user, form: dict[str, str], verb: str = "roll back") -> tuple[str, int] | None:
    forged = csrf.refusal(user)
    if forged:
        log.warning("clm %s by %s refused: %s", verb, user.get_name(), forged)
        return f"Refused: {forged}.", 403
    if not form["reason"]:
        return f"Say why you {verb}: the reason goes into the audit log with your name.", 400
    if len(form["reason"]) > MAX_REASON:
        return f"The reason is longer than {MAX_REASON} characters.", 400
    if form["to_version"] and not _VERSION.fullmatch(form["to_version"]):
        return f"{form['to_version']!r} is not a model version number.", 400
    return None


def _status(exc: ClmError) -> int:
    """As the REST API answers: 409 when the state forbids it (busy, no previous version), 503 when serving fails."""
    return 409 if isinstance(exc, DeployError) else 503 if isinstance(exc, ServingError) else 500


# --- Reports & audit, version reports, the review queue ------------------------------------------------------

AUDIT_PAGE_SIZES = (25, 50, 100, 200)


def _audit_page(cfg):
    from clm_lib.reporting import audit as audit_report

    problem = None
    try:
        flt = audit_report.AuditFilter.parse(request.args)
    except audit_report.FilterError as exc:
        problem, flt = exc, audit_report.AuditFilter()
    limit = int_arg("limit", 50, 1, 500)
    data = audit_report.page(cfg, flt, offset=int_arg("offset", 0, 0, 10_000_000), limit=limit)
    return {"page": data, "verify": audit_report.verify_status(cfg), "filter_problem": problem, "form": request.args}


class AuditView(BaseView):
    """Continual learning → Reports & audit: the whole audit log with filters and paging, its exports, whether the
    hash chain is intact, and links to each version's report."""

    route_base = ROUTE_BASE
    template_folder = TEMPLATES
    default_view = "audit"

    @expose("/audit")
    @requires(READ)
    def audit(self):
        from urllib.parse import urlencode

        def link(**changes) -> str:
            args = {k: v for k, v in request.args.items() if v} | {k: v for k, v in changes.items() if v is not None}
            return f"{url_for('AuditView.audit')}?{urlencode(args)}"

        def export(fmt: str, flt) -> str:
            return f"{airflow_root()}/clm/api/v1/audit/export?{urlencode(flt.query() | {'format': fmt})}"

        return built("audit", _audit_page, "clm/audit.html", crumb="Reports & audit", link=link, export=export,
                      page_sizes=AUDIT_PAGE_SIZES)  # fmt: skip


class ReportView(BaseView):
    """A version's printable report: evaluation, gate, lineage, deployments, audit entries."""

    route_base = ROUTE_BASE
    template_folder = TEMPLATES
    default_view = "report"

    @expose("/report/<version>")
    @requires(READ)
    def report(self, version: str):
        from clm_lib.reporting.report import build_report

        g.clm_tab = "/audit"  # reached from Reports & audit: that tab stays marked
        # An unknown version is a LookupError: a 404 page that names it.
        return built("report", lambda cfg: build_report(cfg, version), "clm/report.html", crumb="Version report")


REVIEW_DAG = "clm_ingest"
MAY_REVIEW = operate(REVIEW_DAG)
"""Accepting a correction makes it data for the next ingest: what triggering ``clm_ingest`` takes."""
_ID = re.compile(r"[0-9]{1,18}")
MAX_DECIDE = 500


class ReviewView(BaseView):
    """Continual learning → Review queue: corrections that serving clients sent wait here (in quarantine, reason
    ``pending_review``) until an operator accepts them (the next ingest curates them) or rejects them."""

    route_base = ROUTE_BASE
    template_folder = TEMPLATES
    default_view = "review"

    @expose("/review")
    @requires(READ)
    def review(self):
        decided = request.args.get("decided")
        count = request.args.get("n", type=int)
        done = {"decision": decided, "count": count} if decided in ("accepted", "rejected") else None
        return self._render(done=done)

    @expose("/review/decide", methods=["GET", "POST"])
    @requires(MAY_REVIEW)
    def decide(self):
        if request.method == "GET":  # back from the login page after a POST: nothing to do but show the queue
            return redirect(url_for("ReviewView.review"))
        from clm_lib.serving import review

        user = current_user()
        form = {
            "decision": request.form.get("decision", ""),
            "reason": request.form.get("reason", "").strip(),
            "ids": request.form.getlist("ids"),
        }
        problem = _review_refusal(user, form)
        if problem is None:
            ids = sorted({int(i) for i in form["ids"]})
            actor = f"airflow:{user.get_name()}"
            try:
                if form["decision"] == "accept":
                    review.accept(resolve_config(), ids, actor=actor, reason=form["reason"])
                else:
                    review.reject(resolve_config(), ids, actor=actor, reason=form["reason"])
            except ClmError as exc:
                problem = str(exc), 409
            except Exception:  # no traceback on the page; the log has it
                log.exception("clm review decision by %s failed", user.get_name())
                problem = "The decision failed unexpectedly; the Airflow api-server log has the details.", 500
            else:
                decided = "accepted" if form["decision"] == "accept" else "rejected"
                return redirect(url_for("ReviewView.review", decided=decided, n=len(ids)), code=303)
        message, status = problem
        return self._render(status, review_problem=message, form=form)

    def _render(self, status: int = 200, **context):
        from clm_lib.reporting.review import queue

        user = current_user()
        may = MAY_REVIEW.allows(user)
        offset = int_arg("offset", 0, 0, 10_000_000)
        return built("review queue", lambda cfg: queue(cfg, offset=offset, limit=50), "clm/review.html", status,
                      crumb="Review queue", may_review=may, csrf_field=csrf.FIELD,
                      form_token=csrf.form_token(user) if may else None, **context)  # fmt: skip


def _review_refusal(user, form) -> tuple[str, int] | None:
    forged = csrf.refusal(user)
    if forged:
        log.warning("clm review decision by %s refused: %s", user.get_name(), forged)
        return f"Refused: {forged}.", 403
    if form["decision"] not in ("accept", "reject"):
        return "Choose accept or reject.", 400
    if not form["ids"]:
        return "Tick at least one correction.", 400
    if len(form["ids"]) > MAX_DECIDE or not all(_ID.fullmatch(i) for i in form["ids"]):
        return "The form named corrections that are not feedback ids; reload the page and try again.", 400
    if form["decision"] == "reject" and not form["reason"]:
        return "Say why you reject them: the reason goes into the audit log with your name.", 400
    if len(form["reason"]) > MAX_REASON:
        return f"The reason is longer than {MAX_REASON} characters.", 400
    return None


exempt_from_session_csrf(ServingView.rollback, ServingView.promote, ReviewView.decide)
