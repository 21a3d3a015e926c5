"""clm's Airflow UI: Flask-AppBuilder views served under ``/pluginsv2/clm/``, guarded by Airflow's auth manager.

Registered by ``plugins/clm_plugin.py``. Airflow puts the plugins folder on ``sys.path``, so this package
imports as ``clm_ui``; ``plugins/.airflowignore`` keeps the plugin loader from importing its modules again.
This module stays import-free: every Airflow process (tasks included) imports it with the plugin.
"""

ROUTE_BASE = "/clm"
"""Every clm page lives under ``/pluginsv2/clm/``."""
CATEGORY = "Continual learning"
"""The navigation group of clm's pages."""

SCREENS = (
    # path under /pluginsv2/clm, Airflow nav name, url_route, icon, own sidebar button, tab group, tab label
    ("/", "Continual learning", "clm-overview", "icon.svg", True, "Model", "Overview"),
    ("/serving", "Serving", "clm-serving", "serving.svg", True, "Model", "Serving"),
    ("/models", "Model registry", "clm-registry", "registry.svg", False, "Model", "Registry"),
    ("/training", "Training pipeline", "clm-training", "training.svg", False, "Model", "Training"),
    ("/strategy", "Continual strategy", "clm-strategy", "strategy.svg", False, "Model", "Strategy"),
    ("/tasks", "Multi-task", "clm-tasks", "tasks.svg", False, "Model", "Multi-task"),
    ("/ingestion", "Data ingestion", "clm-ingestion", "ingestion.svg", False, "Data", "Ingestion"),
    ("/data", "Data versions", "clm-data-versions", "data.svg", False, "Data", "Versions"),
    ("/validation", "Validation", "clm-validation", "validation.svg", False, "Data", "Validation"),
    ("/performance", "Performance & drift", "clm-performance", "performance.svg", False, "Data", "Performance"),
    ("/drift", "Drift", "clm-drift", "drift.svg", False, "Data", "Drift"),
    ("/review", "Review queue", "clm-review", "review.svg", False, "Data", "Review queue"),
    ("/alerts", "Alerts", "clm-alerts", "alerts.svg", False, "Govern", "Alerts"),
    ("/audit", "Reports & audit", "clm-audit", "audit.svg", False, "Govern", "Reports & audit"),
    ("/config", "Configuration", "clm-config", "config.svg", False, "Govern", "Configuration"),
    ("/integrations", "Integrations", "clm-integrations", "integrations.svg", False, "Setup", "Integrations"),
    ("/getting-started", "Getting started", "clm-getting-started", "getting-started.svg", False, "Setup",
     "Getting started"),
)
"""Every clm screen, in menu order: the one list the Airflow navigation (``clm_plugin.external_views``) and the
tab bar on every clm page (``clm/base.html``) are built from. Only the hub (Overview) and Serving, where an incident
is handled, get their own sidebar button; Airflow 3.3 folds the rest into Plugins → "Continual learning". From any
clm page every screen is one click away in its tab bar."""
