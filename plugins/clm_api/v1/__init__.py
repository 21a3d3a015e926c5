"""Version 1 of clm's REST API, under ``/clm/api/v1``: one module per area, each exposing ``router``.

Areas are imported when the app is built (in the api-server only), never when the plugin is loaded by a task.
"""

from __future__ import annotations

import importlib

from fastapi import APIRouter

AREAS = (
    "deployments", "registry", "audit", "review", "data", "training", "tasks", "overview", "performance", "alerts",
    "config", "validation", "ingest",
)  # fmt: skip
"""Modules of this package that hold routes, in the order the OpenAPI document lists them."""


def router() -> APIRouter:
    v1 = APIRouter(prefix="/v1")
    for area in AREAS:
        v1.include_router(importlib.import_module(f"clm_api.v1.{area}").router)
    return v1
