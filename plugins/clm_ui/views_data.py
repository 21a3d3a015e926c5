"""The Data ingestion and Data versions screens, under ``/pluginsv2/clm/ingestion`` and ``/pluginsv2/clm/data``.

Thin like the other views (:mod:`clm_ui.views`, whose page helpers they use): they pass the query string to
:func:`clm_lib.reporting.ingestion.build_ingestion` / :func:`clm_lib.reporting.data_versions.build_data_versions`,
the same functions behind ``/clm/api/v1/ingestion``, ``/quarantine`` and ``/data/tables``, and render. A store
that cannot be read, an unknown table or version (404) and a bad filter (422) are states those pages show.
Quarantined records are hostile input: the templates show them through :func:`clm_lib.reporting.ingestion.clip`
(bounded, control characters made visible) and Jinja's autoescape.
"""

from __future__ import annotations

from urllib.parse import urlencode

from flask import request, url_for
from flask_appbuilder import BaseView, expose

from clm_lib.reporting import data_versions, ingestion
from clm_ui import ROUTE_BASE
from clm_ui.auth import READ, requires
from clm_ui.views import TEMPLATES, _airflow_root, _built

PAGE_HELPERS = {"clip": ingestion.clip, "human_bytes": ingestion.human_bytes}


def _screen(page: str, build, template: str, crumb: str, **context):
    """``_built``, answering with the status the page computed (404 unknown, 422 bad filter) when it rendered."""
    built = {}

    def run(cfg):
        built["page"] = build(cfg, request.args)
        return built["page"]

    body, status = _built(page, run, template, crumb=crumb, **PAGE_HELPERS, **context)
    return body, (built["page"].status if status == 200 and "page" in built else status)


def _link(endpoint: str, **changes) -> str:
    """This page's URL with ``changes`` to its query string (None removes an argument)."""
    args = {k: v for k, v in request.args.items() if v}
    for key, value in changes.items():
        if value is None or value == "":
            args.pop(key, None)
        else:
            args[key] = str(value)
    query = urlencode(args)
    return url_for(endpoint) + (f"?{query}" if query else "")


class IngestionView(BaseView):
    """Continual learning → Data ingestion: batches per source with counts that reconcile, per-task and per-reason
    breakdowns, rows and bytes per hour, and the quarantine browser."""

    route_base = ROUTE_BASE
    template_folder = TEMPLATES
    default_view = "ingestion"

    @expose("/ingestion")
    @requires(READ)
    def ingestion(self):
        return _screen("data ingestion", ingestion.build_ingestion, "clm/ingestion.html", "Data ingestion",
                       link=lambda **c: _link("IngestionView.ingestion", **c), kinds=ingestion.SOURCE_KINDS,
                       statuses=ingestion.BATCH_STATUSES, review_url=f"{request.script_root}{ROUTE_BASE}/review",
                       api=f"{_airflow_root()}/clm/api/v1")  # fmt: skip


class DataVersionsView(BaseView):
    """Continual learning → Data versions: each lake table's Delta history, a diff between two versions, and the
    training runs that read each version."""

    route_base = ROUTE_BASE
    template_folder = TEMPLATES
    default_view = "data_versions"

    @expose("/data")
    @requires(READ)
    def data_versions(self):
        return _screen(
            "data versions", data_versions.build_data_versions, "clm/data_versions.html", "Data versions",
            link=lambda **c: _link("DataVersionsView.data_versions", **c),
            ingestion_url=url_for("IngestionView.ingestion"), api=f"{_airflow_root()}/clm/api/v1",
        )  # fmt: skip
