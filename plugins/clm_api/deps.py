"""What every clm REST route shares: who may call it, clm's config, and the shape of a page of results.

Airflow mounts plugin apps without authentication, so each route depends on Airflow's own security dependencies:
:data:`READ` (view access to the UI and to DAGs: Viewer and above) or :data:`OPERATE` (the right to trigger a clm
DAG run: FAB's User, Op and Admin, the same right ``clm_rollback`` needs). Mutations also land in the audit log,
written by the ``clm_lib`` function the route calls, with the caller as actor (:func:`actor`).
"""

from __future__ import annotations

from typing import Annotated, Generic, TypeVar

from airflow.api_fastapi.auth.managers.models.resource_details import AccessView, DagAccessEntity
from airflow.api_fastapi.core_api.security import GetUserDep, requires_access_dag, requires_access_view
from fastapi import Depends, Query
from pydantic import BaseModel

from clm_lib.airflow.settings import resolve_config
from clm_lib.config import ClmConfig

READ = [Depends(requires_access_view(AccessView.WEBSITE)), Depends(requires_access_dag("GET"))]


def operate(dag_id: str) -> list:
    """Dependencies of a route that changes what ``dag_id`` would change: the caller must be allowed to trigger it."""
    return [Depends(requires_access_dag("POST", DagAccessEntity.RUN, param_dag_id=dag_id))]


OPERATE = operate("clm_rollback")
"""The default operator check, for mutations that belong to no DAG of their own."""


def config() -> ClmConfig:
    """clm's config as the tasks see it (file, environment, ``clm_default`` connection), read per request."""
    return resolve_config()


ConfigDep = Annotated[ClmConfig, Depends(config)]


def actor(user: GetUserDep) -> str:
    """The audit log's name for the authenticated caller."""
    return f"airflow:{user.get_name()}"


ActorDep = Annotated[str, Depends(actor)]

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    """One page of a longer list: ``items`` from ``offset``, at most ``limit`` of ``total``."""

    items: list[T]
    total: int
    offset: int
    limit: int


class PageParams(BaseModel):
    offset: int = 0
    limit: int = 50


def page_params(
    offset: Annotated[int, Query(ge=0, le=10_000_000, description="Items to skip.")] = 0,
    limit: Annotated[int, Query(ge=1, le=500, description="Items per page (at most 500).")] = 50,
) -> PageParams:
    return PageParams(offset=offset, limit=limit)


PageDep = Annotated[PageParams, Depends(page_params)]
