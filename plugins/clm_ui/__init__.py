"""clm's Airflow UI: Flask-AppBuilder views served under ``/pluginsv2/clm/``, guarded by Airflow's auth manager.

Registered by ``plugins/clm_plugin.py``. Airflow puts the plugins folder on ``sys.path``, so this package
imports as ``clm_ui``; ``plugins/.airflowignore`` keeps the plugin loader from importing its modules again.
This module stays import-free: every Airflow process (tasks included) imports it with the plugin.
"""

ROUTE_BASE = "/clm"
"""Every clm page lives under ``/pluginsv2/clm/``."""
CATEGORY = "Continual learning"
"""The navigation group of clm's pages."""
