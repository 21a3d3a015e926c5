"""The Data ingestion and Data versions screens, under ``/pluginsv2/clm/ingestion`` and ``/pluginsv2/clm/data``.

Thin like the other views (:mod:`clm_ui.views`, whose page helpers they use): they pass the query string to
:func:`clm_lib.reporting.ingestion_page.build_ingestion` / :func:`clm_lib.reporting.data_versions.build_data_versions`,
the same functions behind ``/clm/api/v1/ingestion``, ``/quarantine`` and ``/data/tables``, and render. A store
that cannot be read, an unknown table or version (404) and a bad filter (422) are states those pages show.
Quarantined records are hostile input: the templates show them through :func:`clm_lib.reporting.display.clip`
(bounded, control characters made visible) and Jinja's autoescape.
"""

from __future__ import annotations

import logging

from flask import redirect, request, url_for
from flask_appbuilder import BaseView, expose

from clm_lib.reporting import data_versions, ingestion, ingestion_page
from clm_ui import ROUTE_BASE, csrf
from clm_ui.auth import READ, current_user, operate, requires
from clm_ui.page import TEMPLATES, airflow_root, exempt_from_session_csrf, link, screen

log = logging.getLogger(__name__)
MAY_RESTORE = operate("clm_ingest")
"""A restore rewrites what ``clm_ingest`` writes: what triggering it takes (as ``POST /v1/data/tables/{t}/restore``)."""
MAX_REASON = 2000


class IngestionView(BaseView):
    """Continual learning → Data ingestion: batches per source with counts that reconcile, per-task and per-reason
    breakdowns, rows and bytes per hour, and the quarantine browser."""

    route_base = ROUTE_BASE
    template_folder = TEMPLATES
    default_view = "ingestion"

    @expose("/ingestion")
    @requires(READ)
    def ingestion(self):
        return screen("data ingestion", ingestion_page.build_ingestion, "clm/ingestion.html", "Data ingestion",
                       link=lambda **c: link("IngestionView.ingestion", **c), kinds=ingestion.SOURCE_KINDS,
                       statuses=ingestion.BATCH_STATUSES, review_url=f"{request.script_root}{ROUTE_BASE}/review",
                       api=f"{airflow_root()}/clm/api/v1")  # fmt: skip


class DataVersionsView(BaseView):
    """Continual learning → Data versions: each lake table's Delta history, a diff between two versions, and the
    training runs that read each version."""

    route_base = ROUTE_BASE
    template_folder = TEMPLATES
    default_view = "data_versions"

    @expose("/data")
    @requires(READ)
    def data_versions(self):
        return self._render()

    @expose("/data/restore", methods=["GET", "POST"])
    @requires(MAY_RESTORE)
    def restore(self):
        """Restore ``table`` to ``version`` (the form under a history's "restore…" link, which shows its diff)."""
        from clm_lib.airflow.settings import resolve_config
        from clm_lib.data.versions import UnknownVersion, restore
        from clm_lib.errors import ClmError

        if request.method == "GET":  # back from the login page after a POST: nothing to do but show the page
            return redirect(url_for("DataVersionsView.data_versions"))
        user = current_user()
        forged = csrf.refusal(user)
        if forged:
            log.warning("clm data restore by %s refused: %s", user.get_name(), forged)
            return self._render(403, problem=f"Refused: {forged}.")
        table = request.form.get("table", "")[:64]
        version = request.form.get("version", "")
        reason = request.form.get("reason", "").strip()
        if not version.isdigit() or int(version) >= 2**31:
            return self._render(400, problem="The version to restore is not a version number.")
        if not reason or len(reason) > MAX_REASON:
            return self._render(400, problem=f"A restore needs a reason (at most {MAX_REASON} characters).")
        try:
            done = restore(resolve_config(), table, int(version), actor=f"airflow:{user.get_name()}", reason=reason)
        except UnknownVersion as exc:
            return self._render(404, problem=str(exc))
        except ClmError as exc:
            return self._render(409, problem=str(exc))
        except OSError as exc:
            return self._render(503, problem=f"the lake cannot be reached: {exc}")
        return redirect(url_for("DataVersionsView.data_versions", table=table, restored=done.restored_version,
                                new=done.new_version), code=303)  # fmt: skip

    def _render(self, status: int = 200, **context):
        user = current_user()
        may = user is not None and MAY_RESTORE.allows(user)
        body, computed = screen(
            "data versions", data_versions.build_data_versions, "clm/data_versions.html", "Data versions",
            link=lambda **c: link("DataVersionsView.data_versions", **c),
            ingestion_url=url_for("IngestionView.ingestion"), api=f"{airflow_root()}/clm/api/v1",
            may_restore=may, csrf_field=csrf.FIELD, form_token=csrf.form_token(user) if may else None,
            restore_version=request.args.get("restore", type=int), restored=request.args.get("restored", type=int),
            restored_as=request.args.get("new", type=int), **context,
        )  # fmt: skip
        return body, (status if status != 200 else computed)


exempt_from_session_csrf(DataVersionsView.restore)
