"""The Integrations and Getting started screens, under ``/pluginsv2/clm/integrations`` and
``/pluginsv2/clm/getting-started``.

Thin like the other views (:mod:`clm_ui.views`, whose page helpers they use): they call
:func:`clm_lib.airflow.integrations.integrations_here` (which reads the ``clm_default`` connection) and
:func:`clm_lib.reporting.getting_started.build_getting_started`, the same functions behind
``/clm/api/v1/integrations`` and ``/clm/api/v1/getting-started``, and render. Neither shows a secret: addresses
come redacted, and where a store is configured is named, never its value's credentials.
"""

from __future__ import annotations

from flask import request
from flask_appbuilder import BaseView, expose

from clm_lib.airflow.integrations import integrations_here
from clm_lib.reporting.getting_started import build_getting_started
from clm_lib.reporting.integrations import TIMEOUT_S
from clm_ui import ROUTE_BASE
from clm_ui.auth import READ, requires
from clm_ui.page import TEMPLATES, airflow_root, built


class IntegrationsView(BaseView):
    """Continual learning → Integrations: MLflow, clm's database, the lake, Kafka, Kubernetes, GPU nodes."""

    route_base = ROUTE_BASE
    template_folder = TEMPLATES
    default_view = "integrations"

    @expose("/integrations")
    @requires(READ)
    def integrations(self):
        return built("integrations", integrations_here, "clm/integrations.html", crumb="Integrations",
                      timeout_s=TIMEOUT_S, api=f"{airflow_root()}/clm/api/v1")  # fmt: skip


class GettingStartedView(BaseView):
    """Continual learning → Getting started: the five steps, how far this installation has got, the commands."""

    route_base = ROUTE_BASE
    template_folder = TEMPLATES
    default_view = "getting_started"

    @expose("/getting-started")
    @requires(READ)
    def getting_started(self):
        return built("getting started", build_getting_started, "clm/getting_started.html", crumb="Getting started",
                      root=f"{request.script_root}{ROUTE_BASE}", api=f"{airflow_root()}/clm/api/v1")  # fmt: skip
