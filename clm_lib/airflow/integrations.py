"""The Integrations page as the api-server sees it: :func:`clm_lib.reporting.integrations.build_integrations` told
what Airflow's ``clm_default`` connection sets, so each store says where it is configured.

It lives here, not in ``clm_lib.reporting``, because reading the connection needs Airflow; the Integrations screen
and ``GET /clm/api/v1/integrations`` both call :func:`integrations_here`.
"""

from __future__ import annotations

import logging

from clm_lib.config import ClmConfig
from clm_lib.errors import ClmError
from clm_lib.reporting.integrations import IntegrationsPage, build_integrations

log = logging.getLogger(__name__)


def connection_overrides() -> dict[str, str]:
    """What the ``clm_default`` connection sets; {} when it cannot be read (the config resolver has already
    refused a broken one, so the page still shows what the config file says)."""
    from clm_lib.airflow.settings import connection_overrides as read

    try:
        return read()
    except ClmError:
        log.warning("clm_default connection cannot be read", exc_info=True)
        return {}


def integrations_here(cfg: ClmConfig) -> IntegrationsPage:
    """Every integration's state, with where ``clm_default`` configures it."""
    return build_integrations(cfg, connection=connection_overrides())
