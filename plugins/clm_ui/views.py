"""clm's Flask-AppBuilder views, served by the FAB provider under ``/pluginsv2/clm/`` in Airflow 3.3.

Views hold no business logic: they load the config, call :mod:`clm_lib.reporting`, and render.
"""

from __future__ import annotations

import logging
from pathlib import Path

from flask import Blueprint, render_template, request
from flask_appbuilder import BaseView, expose

from clm_lib.config import load_config
from clm_lib.errors import ClmError
from clm_lib.reporting import build_overview
from clm_ui import ROUTE_BASE
from clm_ui.auth import READ, current_user, requires
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


class OverviewView(BaseView):
    """Continual learning → Overview: serving models, candidates, forgetting matrix, last data, audit."""

    route_base = ROUTE_BASE
    template_folder = TEMPLATES
    default_view = "overview"

    @expose("/")
    @requires(READ)
    def overview(self):
        try:
            overview = build_overview(load_config())
        except ClmError as exc:
            return _page("clm/problem.html", 500, title="clm's configuration is invalid", message=str(exc))
        except Exception:  # the page must never show a traceback; the log has it
            log.exception("clm overview failed")
            return _page(
                "clm/problem.html",
                500,
                title="The overview could not be built",
                message="An unexpected error occurred; the Airflow api-server log has the details.",
            )
        return _page("clm/overview.html", o=overview)
