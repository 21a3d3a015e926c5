"""The Validation screen, under ``/pluginsv2/clm/validation``: batches with their Great Expectations outcome and
one batch expectation by expectation.

Thin like the other views: it passes the query string to :func:`clm_lib.reporting.validation_page.build_validation`,
built on the same functions as ``/clm/api/v1/validation``, and renders. A store that cannot be read, an unknown
batch (404) and a bad filter (422) are states the page shows. A batch's GX Data Docs page
(:mod:`clm_lib.validation.data_docs`, built on demand, CDN assets removed) is served as is, under a CSP that allows
no script. Failing values are records' text, hostile input:
the template shows them through :func:`clm_lib.reporting.display.clip` and Jinja's autoescape.
"""

from __future__ import annotations

from flask import Response, url_for
from flask_appbuilder import BaseView, expose

from clm_lib.airflow.settings import resolve_config
from clm_lib.reporting.ingestion import SOURCE_KINDS
from clm_lib.reporting.params import NotFound
from clm_lib.reporting.validation import OUTCOMES
from clm_lib.reporting.validation_page import build_validation
from clm_lib.validation.data_docs import check_batch_id, data_docs_page
from clm_ui import ROUTE_BASE
from clm_ui.auth import READ, requires
from clm_ui.page import TEMPLATES, airflow_root, built, link, page, screen

DATA_DOCS_HEADERS = {
    # GX's page is served without its scripts (clm_lib.validation.data_docs removes them): none may run.
    "Content-Security-Policy": "default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
}


class ValidationView(BaseView):
    """Continual learning → Validation: each batch's GX verdict, expectation by expectation, with failing values."""

    route_base = ROUTE_BASE
    template_folder = TEMPLATES
    default_view = "validation"

    def _context(self) -> dict:
        return {
            "api": f"{airflow_root()}/clm/api/v1",
            "kinds": SOURCE_KINDS,
            "outcomes": OUTCOMES,
            "ingestion_url": url_for("IngestionView.ingestion"),
            "list_url": url_for("ValidationView.validation"),
        }

    @expose("/validation")
    @requires(READ)
    def validation(self):
        return screen("validation", build_validation, "clm/validation.html", "Validation",
                       link=lambda **c: link("ValidationView.validation", **c), **self._context())  # fmt: skip

    @expose("/validation/<batch_id>")
    @requires(READ)
    def batch(self, batch_id: str):
        return screen("validation", lambda cfg, args: build_validation(cfg, args, batch_id=batch_id),
                       "clm/validation_batch.html", "Validation", batch_id=batch_id,
                       quarantine_url=url_for("IngestionView.ingestion", batch=batch_id) + "#quarantine",
                       data_docs_url=url_for("ValidationView.data_docs", batch_id=batch_id),
                       **self._context())  # fmt: skip

    @expose("/validation/<batch_id>/data-docs")
    @requires(READ)
    def data_docs(self, batch_id: str):
        try:
            check_batch_id(batch_id)  # before the configuration, the database or the filesystem is touched
            path = data_docs_page(resolve_config(), batch_id)
        except NotFound as exc:
            return page("clm/problem.html", 404, crumb="Validation", title="Not found", message=str(exc))
        except Exception as exc:
            error = exc  # Python unbinds ``exc`` when the block ends; ``failed`` runs later

            def failed(cfg):
                # _built turns it into the page every screen shows: the store down, a bad config, no traceback.
                raise error

            return built("validation", failed, "clm/problem.html", crumb="Validation")
        return Response(path.read_bytes(), 200, mimetype="text/html", headers=DATA_DOCS_HEADERS)
