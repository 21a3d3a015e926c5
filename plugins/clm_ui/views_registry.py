"""The Model registry screen, under ``/pluginsv2/clm/models``: every version with what made it, the alias history,
a version's lineage graph (``/models/<version>``) and two versions side by side (``/models/compare``).

Thin like the other views: :mod:`clm_lib.reporting.registry` and :mod:`clm_lib.reporting.lineage` compute
everything (the graph's coordinates included), the same functions behind ``/clm/api/v1/models``; this module only
maps a lineage node to the screen that shows it.
"""

from __future__ import annotations

from urllib.parse import urlencode

from flask import request
from flask_appbuilder import BaseView, expose

from clm_lib.registry.aliases import ALL as ALIASES
from clm_lib.reporting import registry
from clm_lib.reporting.lineage import Node
from clm_ui import ROUTE_BASE
from clm_ui.auth import READ, requires
from clm_ui.page import TEMPLATES, airflow_root, built, link, screen


def _screens() -> str:
    return f"{request.script_root}{ROUTE_BASE}"


def node_href(node: Node) -> str | None:
    """The screen that shows what a lineage node stands for."""
    root = _screens()
    match node.kind:
        case "batch":
            return f"{root}/ingestion?{urlencode({'batch': node.key})}#quarantine"
        case "curated" | "replay":
            return f"{root}/data?{urlencode({'table': node.kind, 'to': node.key})}#diff"
        case "run":
            return f"{root}/training?{urlencode({'run': node.key})}"
        case "model":
            return f"{root}/report/{node.key}"
        case "parent":
            return f"{root}/models/{node.key}"
        case "deployment":
            return f"{root}/serving#history"
        case "more":
            return f"{root}/serving#history" if node.key == "deployment" else f"{root}/data?table=curated#history"
    return None


def _context() -> dict:
    return {"api": f"{airflow_root()}/clm/api/v1", "shown": registry.shown_value}


class RegistryView(BaseView):
    """Continual learning → Model registry: versions (params, config hash, data read, parent, per-task scores, gate),
    the alias history MLflow does not keep, each version's lineage, and comparisons."""

    route_base = ROUTE_BASE
    template_folder = TEMPLATES
    default_view = "registry"

    @expose("/models")
    @requires(READ)
    def registry(self):
        return screen("model registry", registry.build_registry, "clm/registry.html", "Model registry",
                       link=lambda **c: link("RegistryView.registry", **c), aliases=ALIASES, **_context())  # fmt: skip

    @expose("/models/compare")
    @requires(READ)
    def compare(self):
        # An argument that is not a version is a 422 naming it; an unknown version a 404 (LookupError).
        return screen("comparison", registry.build_compare, "clm/compare.html", "Compare versions", **_context())

    @expose("/models/<version>")
    @requires(READ)
    def version(self, version: str):
        return built("model version", lambda cfg: registry.build_version_page(cfg, version), "clm/lineage.html",
                      crumb="Model version", node_href=node_href, **_context())  # fmt: skip
