"""The Configuration screen under ``/pluginsv2/clm/config``: the live configuration revision as forms, a preview
of a change (its diff against the live revision and what it would have changed), history with a diff between any
two revisions, and revert.

Thin like the other views: everything is :mod:`clm_lib.reporting.config` over :mod:`clm_lib.config_store`, the
functions behind ``/clm/api/v1/config`` and ``clm config``. Changing takes the right to trigger ``clm_promotion``
(the REST routes' check: most of what a revision changes decides what a promotion does). A Viewer sees the forms
disabled, and a Viewer's POST is refused before anything happens; every POST carries clm's form token
(:mod:`clm_ui.csrf`) and a reason, and a save lands in the audit log with the caller's name.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from flask import redirect, request, url_for
from flask_appbuilder import BaseView, expose

from clm_lib.airflow.settings import resolve_file_config
from clm_lib.errors import ClmError
from clm_lib.reporting import config as report
from clm_lib.reporting.next_promotion import PROMOTION_DAG
from clm_lib.reporting.stores import StoreDown, reading
from clm_ui import ROUTE_BASE, csrf
from clm_ui.auth import READ, current_user, operate, requires
from clm_ui.page import TEMPLATES, airflow_root, built, exempt_from_session_csrf

log = logging.getLogger(__name__)

MAY_CHANGE = operate(PROMOTION_DAG)
"""Changing the configuration takes what triggering ``clm_promotion`` takes (as ``/v1/config``'s POST routes)."""
FIELD_PREFIX = "f:"
"""Form inputs are named ``f:<dotted path>``; only those whose value differs from the live one become changes."""
MAX_FIELDS = 300


def _stored(call):
    """``call(session, file_cfg)`` on clm's database, as a ``_built`` build function."""

    def build(_cfg):
        file_cfg = resolve_file_config()
        with reading(file_cfg.database_url) as session:
            return call(session, file_cfg)

    return build


def _parse(text: str) -> Any:
    """A form value: YAML, as ``clm config set`` reads it (``30``, ``[10, 100]``, ``null``, ``canary``)."""
    import yaml

    try:
        return yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError:
        return text  # the model refuses it with the field's path and rule


def _show(value: Any) -> str:
    """How a value is written in its form input (the inverse of :func:`_parse` for every field type)."""
    if isinstance(value, str):
        return value
    return json.dumps(value)


class ConfigView(BaseView):
    """Govern → Configuration."""

    route_base = ROUTE_BASE
    template_folder = TEMPLATES
    default_view = "config"

    @expose("/config")
    @requires(READ)
    def config(self):
        version = request.args.get("version", "")
        number = int(version) if version.isdigit() and 0 < int(version) < 2**31 else None
        return self._page(200, number=number, saved=request.args.get("saved"))

    @expose("/config/history")
    @requires(READ)
    def history(self):
        a, b = request.args.get("a", ""), request.args.get("b", "")

        def build(session, file_cfg):
            revs = report.revision_list(session, file_cfg, limit=200)
            diff = None
            if a.isdigit() and b.isdigit() and 0 < int(a) < 2**31 and 0 < int(b) < 2**31:
                diff = report.revision_diff(session, file_cfg, int(a), int(b))
            return {"revisions": revs, "diff": diff}

        return built("configuration history", _stored(build), "clm/config_history.html", crumb="Configuration",
                      a=a, b=b, **self._common())  # fmt: skip

    @expose("/config/preview", methods=["GET", "POST"])
    @requires(MAY_CHANGE)
    def preview(self):
        if request.method == "GET":  # back from the login page after a POST: nothing to do but show the page
            return redirect(url_for("ConfigView.config"))
        refused = self._forged()
        if refused:
            return refused
        fields = {k[len(FIELD_PREFIX) :]: v for k, v in list(request.form.items())[: MAX_FIELDS + 2]
                  if k.startswith(FIELD_PREFIX)}  # fmt: skip

        def build(session, file_cfg):
            live = report.config_view(session, file_cfg)
            current = {f.path: f.value for s in live.sections for f in s.fields if f.read_only is None}
            changes = {p: _parse(v) for p, v in fields.items() if p in current and _parse(v) != current[p]}
            return {"preview": report.preview(session, file_cfg, changes) if changes else None, "changes": changes}

        done = self._store(build)
        if isinstance(done, tuple):
            return self._page(done[1], problem=done[0])
        return built("configuration preview", lambda _cfg: done, "clm/config_preview.html", crumb="Configuration",
                      changes_json=json.dumps(done["changes"]), **self._common())  # fmt: skip

    @expose("/config/save", methods=["GET", "POST"])
    @requires(MAY_CHANGE)
    def save(self):
        if request.method == "GET":
            return redirect(url_for("ConfigView.config"))
        refused = self._forged()
        if refused:
            return refused
        form = {n: request.form.get(n, "").strip()[:20_000] for n in ("changes", "base_revision", "reason")}
        try:
            changes = json.loads(form["changes"])
            assert isinstance(changes, dict)
        except (ValueError, AssertionError):
            return self._page(400, problem="The change could not be read back; preview it again.")
        actor = f"airflow:{current_user().get_name()}"
        base = int(form["base_revision"]) if form["base_revision"].isdigit() else 0
        done = self._store(lambda s, f: report.save(s, f, changes=changes, base_revision=base, actor=actor,
                                                    reason=form["reason"]))  # fmt: skip
        if isinstance(done, tuple):
            return self._page(done[1], problem=done[0])
        return redirect(url_for("ConfigView.config", saved=done.number), code=303)

    @expose("/config/revert", methods=["GET", "POST"])
    @requires(MAY_CHANGE)
    def revert(self):
        if request.method == "GET":
            return redirect(url_for("ConfigView.history"))
        refused = self._forged()
        if refused:
            return refused
        form = {n: request.form.get(n, "").strip()[:2000] for n in ("to", "base_revision", "reason")}
        to = int(form["to"]) if form["to"].isdigit() and int(form["to"]) < 2**31 else 0
        base = int(form["base_revision"]) if form["base_revision"].isdigit() else 0
        actor = f"airflow:{current_user().get_name()}"
        done = self._store(lambda s, f: report.revert(s, f, to=to, base_revision=base, actor=actor,
                                                      reason=form["reason"]))  # fmt: skip
        if isinstance(done, tuple):
            return self._page(done[1], problem=done[0])
        return redirect(url_for("ConfigView.config", saved=done.number), code=303)

    # --- helpers ----------------------------------------------------------------------------------------------

    @staticmethod
    def _common() -> dict:
        user = current_user()
        may = MAY_CHANGE.allows(user)
        return {"may_change": may, "csrf_field": csrf.FIELD, "form_token": csrf.form_token(user) if may else None,
                "api": f"{airflow_root()}/clm/api/v1", "field_prefix": FIELD_PREFIX, "show": _show,
                "dag": PROMOTION_DAG, "serving_url": f"{request.script_root}{ROUTE_BASE}/serving"}  # fmt: skip

    def _page(self, status: int, number: int | None = None, **context):
        return built("configuration", _stored(lambda s, f: report.config_view(s, f, number)), "clm/config.html",
                      status, crumb="Configuration", **self._common(), **context)  # fmt: skip

    @staticmethod
    def _store(call):
        """The saved revision, or ``(message, status)``: refusals and failures alike, never a traceback."""
        from clm_lib.config_store import ConfigChangeError, ConfigConflict, RevisionNotFound

        try:
            file_cfg = resolve_file_config()
            with reading(file_cfg.database_url) as session:
                return call(session, file_cfg)
        except RevisionNotFound as exc:
            return str(exc), 404
        except ConfigChangeError as exc:
            return str(exc), 400
        except ConfigConflict as exc:
            return str(exc), 409
        except (StoreDown, ClmError) as exc:
            return str(exc), 503
        except Exception:  # no traceback on the page; the log has it
            log.exception("clm configuration change by %s failed", current_user().get_name())
            return "The change failed unexpectedly; the Airflow api-server log has the details.", 500

    def _forged(self):
        user = current_user()
        forged = csrf.refusal(user)
        if forged:
            log.warning("clm configuration change by %s refused: %s", user.get_name(), forged)
            return self._page(403, problem=f"Refused: {forged}.")
        return None


exempt_from_session_csrf(ConfigView.preview, ConfigView.save, ConfigView.revert)
