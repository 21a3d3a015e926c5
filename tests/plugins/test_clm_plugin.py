"""Airflow's own plugins manager finds clm's plugin in plugins/, without import errors or double imports."""

import sys
from pathlib import Path

PLUGINS = Path(__file__).resolve().parents[2] / "plugins"


def test_plugins_manager_loads_the_plugin_without_errors(airflow_fab):
    from airflow import plugins_manager

    plugins, errors = plugins_manager._get_plugins()

    assert "clm" in [p.name for p in plugins]
    assert not [src for src in errors if "clm" in src], errors


def test_package_modules_are_imported_once_as_a_package(airflow_fab):
    from airflow import plugins_manager
    from airflow._shared.module_loading import find_path_from_directory

    plugins_manager._get_plugins()

    walked = [Path(p) for p in find_path_from_directory(str(PLUGINS), ".airflowignore")]
    assert PLUGINS / "clm_plugin.py" in walked
    assert not [p for p in walked if {"clm_ui", "clm_api"} & set(p.parts)], "plugins/.airflowignore must hide them"
    from_package = {
        name for name, mod in list(sys.modules.items()) if str(getattr(mod, "__file__", "")).startswith(str(PLUGINS))
    }
    assert {n for n in from_package if n != "clm_plugin" and not n.startswith(("clm_ui", "clm_api"))} == set()


def test_nav_entry_points_at_the_served_view(airflow_fab, flask_app):
    from airflow import plugins_manager
    from airflow.api_fastapi.core_api.datamodels.plugins import PluginResponse

    clm = next(p for p in plugins_manager.get_plugin_info() if p["name"] == "clm")
    nav = PluginResponse.model_validate(clm).external_views  # what /api/v2/plugins hands the React UI
    by_name = {v.name: v for v in nav}
    assert all((v.category, v.destination) == ("Continual learning", "nav") for v in nav)
    mine = ("Continual learning", "Drift", "Serving", "Reports & audit", "Review queue")
    assert {n: (v.url_route, v.href) for n, v in by_name.items() if n in mine} == {
        "Continual learning": ("clm-overview", "/pluginsv2/clm/"),
        "Serving": ("clm-serving", "/pluginsv2/clm/serving"),
        "Drift": ("clm-drift", "/pluginsv2/clm/drift"),
        "Reports & audit": ("clm-audit", "/pluginsv2/clm/audit"),
        "Review queue": ("clm-review", "/pluginsv2/clm/review"),
    }
    # The hub and the incident screen keep their own sidebar buttons; the rest fold into Plugins → the category.
    assert [v.name for v in nav if v.nav_top_level] == ["Continual learning", "Serving"]
    assert len([v for v in nav if not v.nav_top_level]) >= 2  # Airflow folds two or more; one would stand alone
    rules = {r.rule: r.endpoint for r in flask_app.url_map.iter_rules()}
    assert rules["/clm/"] == "OverviewView.overview"
    assert rules["/clm/drift"] == "DriftView.drift"
    assert rules["/clm/serving"] == "ServingView.serving"
    assert rules["/clm/serving/rollback"] == "ServingView.rollback"
    assert rules["/clm/audit"] == "AuditView.audit"
    assert rules["/clm/review"] == "ReviewView.review"
    assert rules["/clm/review/decide"] == "ReviewView.decide"
    assert rules["/clm/report/<version>"] == "ReportView.report"
    for v in nav:  # every entry points at a served view
        assert v.href.removeprefix("/pluginsv2") in rules, v.href
    assert "/clm/static/<path:filename>" in rules
    assert all("name" not in v for v in clm["appbuilder_views"])  # no legacy FAB menu: the nav entries are the way in


def test_importing_the_plugin_is_cheap_for_task_processes():
    # Every task imports every plugin; the views (Flask-AppBuilder, the API's auth, clm_lib) load lazily.
    import subprocess

    probe = (
        "import sys, clm_plugin; "
        "print(sorted(m for m in ('flask_appbuilder', 'fastapi', 'clm_lib', 'clm_ui.views', 'clm_api.app')"
        " if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=PLUGINS, capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip() == "[]"
