"""clm's Airflow plugin: the "Continual learning" screens inside the Airflow 3.3 UI.

The views are Flask-AppBuilder views (``appbuilder_views``), which the FAB provider serves under
``/pluginsv2/``. Registered without a ``name`` they get no legacy FAB menu; the ``external_views`` entry
below puts them in the React navigation instead, rendered in an iframe at ``/plugin/<url_route>``.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

from airflow.plugins_manager import AirflowPlugin
from clm_ui import CATEGORY, ROUTE_BASE


class ClmPlugin(AirflowPlugin):
    name = "clm"
    external_views = [
        {
            "name": "Continual learning",
            "category": CATEGORY,
            "href": f"/pluginsv2{ROUTE_BASE}/",
            "url_route": "clm-overview",
            "destination": "nav",
            "icon": f"/pluginsv2{ROUTE_BASE}/static/icon.svg",
        }
    ]

    # Every task loads every plugin (task_runner.get_template_context integrates plugin macros), and only
    # the api-server reads these two. Importing Flask-AppBuilder and the auth manager's API at module level
    # would add ~3 s to each task on a small machine, so they are imported on first read instead.
    @cached_property
    def appbuilder_views(self) -> list[dict[str, Any]]:  # type: ignore[override]
        from clm_ui.views import OverviewView

        return [{"view": OverviewView()}]

    @cached_property
    def flask_blueprints(self) -> list[Any]:  # type: ignore[override]
        from clm_ui.views import static_blueprint

        return [static_blueprint]
