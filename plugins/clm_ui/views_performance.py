"""The Performance & drift screen, under ``/pluginsv2/clm/performance``.

Thin like the other views (:mod:`clm_ui.views`, whose page helpers it uses): it passes the time window and version
of the address to :func:`clm_lib.reporting.performance_page.build_performance`, whose data comes from the same
functions as ``/clm/api/v1/performance/*``, and renders the charts that function laid out. A bad window or version
is a 422 page showing the defaults; a database that cannot be read is the problem page naming it and since when.
"""

from __future__ import annotations

from functools import partial

from flask import request
from flask_appbuilder import BaseView, expose

from clm_lib.reporting.performance_page import WINDOWS, build_performance
from clm_ui import ROUTE_BASE
from clm_ui.auth import READ, requires
from clm_ui.page import TEMPLATES, airflow_root, link, screen


class PerformanceView(BaseView):
    """Continual learning → Performance & drift: per-task accuracy across versions, live serving numbers per version
    over time, and each drift detector against its threshold."""

    route_base = ROUTE_BASE
    template_folder = TEMPLATES
    default_view = "performance"

    @expose("/performance")
    @requires(READ)
    def performance(self):
        return screen("performance", build_performance, "clm/performance.html", crumb="Performance & drift",
                      link=partial(link, "PerformanceView.performance"), windows=list(WINDOWS),
                      drift_url=f"{request.script_root}{ROUTE_BASE}/drift",
                      api=f"{airflow_root()}/clm/api/v1/performance")  # fmt: skip
