"""clm's REST API inside Airflow's api-server: deployments, serving state, and the one-click rollback.

Registered by ``plugins/clm_plugin.py`` as a ``fastapi_apps`` entry at :data:`URL_PREFIX`. Airflow mounts plugin
apps without authentication, so every route depends on Airflow's own security dependencies (see ``app.py``).
This module stays import-free: every Airflow process (tasks included) imports it with the plugin.
"""

URL_PREFIX = "/clm/api"
"""Every route lives under ``<airflow>/clm/api/``."""
