"""The Alerts screen, under ``/pluginsv2/clm/alerts``: alerts filtered (open / acknowledged / resolved / all, kind,
severity), each with its delivery attempts, each channel's delivery state, and for operators the buttons that
acknowledge and resolve (also on the Overview's open alerts).

Thin like the other views: :func:`clm_lib.reporting.alerts.alerts_page` (the same as ``GET /clm/api/v1/alerts``)
and :func:`clm_lib.alerts.acknowledge` / :func:`~clm_lib.alerts.resolve` (``POST /clm/api/v1/alerts/{id}/ack``),
audited with the user's name. Forms carry clm's CSRF token (:mod:`clm_ui.csrf`). Messages are pipeline text:
Jinja's autoescape shows them as text.
"""

from __future__ import annotations

import logging

from flask import redirect, request, url_for
from flask_appbuilder import BaseView, expose

from clm_lib.airflow.settings import resolve_config
from clm_lib.alerts import AlertNotFound, acknowledge, resolve
from clm_lib.alerts.config import SEVERITIES
from clm_lib.errors import ClmError
from clm_lib.reporting.alerts import ALERT_KINDS, STATUSES, alerts_page
from clm_lib.reporting.stores import StoreDown, reading
from clm_ui import ROUTE_BASE, csrf
from clm_ui.auth import READ, current_user, operate, requires
from clm_ui.page import TEMPLATES, built, exempt_from_session_csrf, int_arg, page

log = logging.getLogger(__name__)

ALERTS_DAG = "clm_alerts"
MAY_ACK = operate(ALERTS_DAG)
"""Acknowledging or resolving changes what ``clm_alerts`` sends: what triggering it takes."""
MAX_REASON = 2000
PAGE_SIZE = 50


def _choice(name: str, allowed: tuple[str, ...], default: str | None) -> str | None:
    value = request.args.get(name) or default
    return value if value is None or value in allowed else None


class AlertsView(BaseView):
    """Govern → Alerts."""

    route_base = ROUTE_BASE
    template_folder = TEMPLATES
    default_view = "alerts"

    def create_blueprint(self, appbuilder, endpoint=None, static_folder=None):
        # The Overview's open alerts carry an Acknowledge button: its form token comes from here, so the Overview
        # view needs no knowledge of alerts.
        blueprint = super().create_blueprint(appbuilder, endpoint=endpoint, static_folder=static_folder)
        blueprint.app_context_processor(overview_alert_form)
        return blueprint

    @expose("/alerts")
    @requires(READ)
    def alerts(self):
        return self._render()

    @expose("/alerts/<int:alert_id>/ack", methods=["GET", "POST"])
    @requires(MAY_ACK)
    def ack(self, alert_id: int):
        return self._act(alert_id, "acknowledged")

    @expose("/alerts/<int:alert_id>/resolve", methods=["GET", "POST"])
    @requires(MAY_ACK)
    def resolve(self, alert_id: int):
        return self._act(alert_id, "resolved")

    def _act(self, alert_id: int, done: str):
        if request.method == "GET":  # back from the login page after a POST: nothing to do but show the list
            return redirect(url_for("AlertsView.alerts"))
        user = current_user()
        forged = csrf.refusal(user)
        if forged:
            log.warning("clm alert %s by %s refused: %s", done, user.get_name(), forged)
            return self._render(403, problem=f"Refused: {forged}.")
        reason = request.form.get("reason", "").strip()
        if len(reason) > MAX_REASON:
            return self._render(400, problem=f"The reason is longer than {MAX_REASON} characters.")
        actor = f"airflow:{user.get_name()}"
        try:
            with reading(resolve_config().database_url) as s:
                if done == "acknowledged":
                    acknowledge(s, alert_id, actor)
                else:
                    resolve(s, alert_id, actor, reason=reason)
        except AlertNotFound as exc:
            return self._render(404, problem=str(exc))
        except StoreDown as exc:
            return page("clm/problem.html", 503, crumb="Alerts", title=f"{exc.store} cannot be read",
                         message=str(exc), notice="warn")  # fmt: skip
        except ClmError as exc:
            return self._render(409, problem=str(exc))
        # Post/redirect/get; back to the Overview when the button was there.
        if request.form.get("back") == "overview":
            return redirect(url_for("OverviewView.overview"), code=303)
        return redirect(url_for("AlertsView.alerts", status=request.form.get("status") or None, done=done,
                                alert=alert_id), code=303)  # fmt: skip

    def _render(self, status: int = 200, **context):
        user = current_user()
        may = MAY_ACK.allows(user)
        chosen = {"status": _choice("status", STATUSES, "open"), "kind": _choice("kind", ALERT_KINDS, None),
                  "severity": _choice("severity", SEVERITIES, None)}  # fmt: skip
        bad = [n for n in ("status", "kind", "severity") if request.args.get(n) and chosen[n] is None]
        if bad:
            status, context["problem"] = 422, f"Unknown {', '.join(bad)}: showing without that filter."
        offset = int_arg("offset", 0, 0, 10_000_000)
        done = request.args.get("done") if request.args.get("done") in ("acknowledged", "resolved") else None
        return built("alerts", lambda cfg: alerts_page(cfg, status=chosen["status"] or "open", kind=chosen["kind"],
                                                        severity=chosen["severity"], offset=offset, limit=PAGE_SIZE),
                      "clm/alerts.html", status, crumb="Alerts", may_ack=may, csrf_field=csrf.FIELD,
                      form_token=csrf.form_token(user) if may else None, kinds=ALERT_KINDS, statuses=STATUSES,
                      severities=SEVERITIES, done=done, done_id=request.args.get("alert", type=int),
                      **context)  # fmt: skip


def overview_alert_form() -> dict:
    """``alert_token`` on the Overview for a user who may acknowledge (None: no button)."""
    if not request or request.path != f"{ROUTE_BASE}/":
        return {}
    user = current_user()
    return {"alert_token": csrf.form_token(user) if user is not None and MAY_ACK.allows(user) else None}


exempt_from_session_csrf(AlertsView.ack, AlertsView.resolve)
