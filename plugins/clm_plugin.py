"""clm's Airflow plugin: the "Continual learning" screens inside the Airflow 3.3 UI.

The views are Flask-AppBuilder views (``appbuilder_views``), which the FAB provider serves under
``/pluginsv2/``. Registered without a ``name`` they get no legacy FAB menu; the ``external_views`` entries
below put them in the React navigation instead, rendered in an iframe at ``/plugin/<url_route>``.
``nav_top_level``: Airflow 3.3's sidebar folds two or more plugin entries without it into a "Plugins" menu, one
submenu per ``category``. With a dozen clm screens, only the hub (Overview) and Serving keep their own sidebar
button; the rest sit under Plugins → "Continual learning", and every clm page links every screen in its tab bar
(one list: ``clm_ui.SCREENS``).
The REST API (``clm_api``, a ``fastapi_apps`` entry) answers at ``/clm/api/``.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

from airflow.plugins_manager import AirflowPlugin
from clm_ui import CATEGORY, ROUTE_BASE, SCREENS


class ClmPlugin(AirflowPlugin):
    name = "clm"
    external_views = [
        {
            "name": name,
            "category": CATEGORY,
            "href": f"/pluginsv2{ROUTE_BASE}{path}",
            "url_route": url_route,
            "destination": "nav",
            "nav_top_level": top_level,
            "icon": f"/pluginsv2{ROUTE_BASE}/static/{icon}",
        }
        for path, name, url_route, icon, top_level, _group, _tab in SCREENS
    ]

    # Every task loads every plugin (task_runner.get_template_context integrates plugin macros), and only
    # the api-server reads these. Importing Flask-AppBuilder and the auth manager's API at module level
    # would add ~3 s to each task on a small machine, so they are imported on first read instead.
    @cached_property
    def appbuilder_views(self) -> list[dict[str, Any]]:  # type: ignore[override]
        from clm_ui.views import AuditView, DriftView, OverviewView, ReportView, ReviewView, ServingView
        from clm_ui.views_alerts import AlertsView
        from clm_ui.views_config import ConfigView
        from clm_ui.views_data import DataVersionsView, IngestionView
        from clm_ui.views_performance import PerformanceView
        from clm_ui.views_registry import RegistryView
        from clm_ui.views_setup import GettingStartedView, IntegrationsView
        from clm_ui.views_tasks import TasksView
        from clm_ui.views_training import StrategyView, TrainingView
        from clm_ui.views_validation import ValidationView

        return [{"view": OverviewView()}, {"view": DriftView()}, {"view": ServingView()}, {"view": AuditView()},
                {"view": ReviewView()}, {"view": ReportView()}, {"view": IngestionView()},
                {"view": DataVersionsView()}, {"view": TrainingView()}, {"view": StrategyView()},
                {"view": IntegrationsView()}, {"view": GettingStartedView()},
                {"view": RegistryView()}, {"view": TasksView()}, {"view": PerformanceView()},
                {"view": AlertsView()}, {"view": ConfigView()}, {"view": ValidationView()}]  # fmt: skip

    @cached_property
    def flask_blueprints(self) -> list[Any]:  # type: ignore[override]
        from clm_ui.views import static_blueprint

        return [static_blueprint]

    @cached_property
    def fastapi_apps(self) -> list[dict[str, Any]]:  # type: ignore[override]
        # Mounted by the api-server without auth: every route of clm_api depends on Airflow's security.
        from clm_api import URL_PREFIX
        from clm_api.app import create_app

        return [{"app": create_app(), "url_prefix": URL_PREFIX, "name": "clm API"}]
