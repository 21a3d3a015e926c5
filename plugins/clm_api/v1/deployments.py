"""Deployments, serving state, promotion and rollback: ``/clm/api/v1/deployments``, ``/serving``,
``/promotion/next``, ``/promote``, ``/rollback``.

The same functions as the Serving screen, the CLI and the ``clm_rollback`` DAG: :mod:`clm_lib.deploy.history`,
:func:`clm_lib.deploy.state.serving_state`, :mod:`clm_lib.reporting.next_promotion`,
:func:`clm_lib.airflow.promote.request_promotion` (which triggers ``clm_promotion``: its gate decides),
:func:`clm_lib.deploy.rollback.rollback`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select

from clm_api.deps import OPERATE, READ, ActorDep, ConfigDep, Page, PageDep, operate
from clm_lib.reporting.next_promotion import PROMOTION_DAG, NextPromotion, UnknownVersion, build_next_promotion
from clm_lib.reporting.stores import reading

router = APIRouter(tags=["deployments"])

MAX_ID = 2**63 - 1
"""The largest id a database row can have: a larger path id is a 422 naming it, never a driver overflow."""
DeploymentId = Annotated[int, Path(ge=1, le=MAX_ID, description="A deployment's id (see GET /v1/deployments).")]


class DeploymentEventOut(BaseModel):
    at: datetime | None
    step: str
    status: str
    message: str | None
    weights: dict[str, Any] | None = None
    metrics: dict[str, Any] | None = None


class DeploymentOut(BaseModel):
    """A promotion or rollback: what it moved, who started it and why, and how it ended."""

    id: int
    kind: str
    model_name: str
    version: str
    from_version: str | None
    strategy: str
    status: str
    slot: str | None
    stable_slot: str | None
    actor: str
    reason: str | None
    outcome: str | None
    started_at: datetime | None
    finished_at: datetime | None
    marks: dict[str, str] = Field(default_factory=dict)
    """Versions named here that were rolled back or rejected (and not champion since), and why."""


class DeploymentDetail(DeploymentOut):
    events: list[DeploymentEventOut]
    """Every step it took, oldest first."""


class RollbackPlan(BaseModel):
    possible: bool
    why_not: str | None
    targets: list[dict[str, Any]]


class ServingOut(BaseModel):
    """What serves: aliases, the promotion under way, each slot and its traffic, and where a rollback would go."""

    model_config = ConfigDict(extra="allow")

    model: str
    strategy: str
    aliases: dict[str, str | None]
    registry: str
    """How MLflow's aliases were read: ``ok``; ``empty`` (no version registered yet); ``unreachable`` (MLflow did not
    answer in time: the aliases above are unknown, not absent)."""
    active_deployment: dict[str, Any] | None
    slots: dict[str, dict[str, Any]] | None
    weights: dict[str, int] | None
    serving_error: str | None
    router_problem: str | None
    database_problem: str | None
    rollback: RollbackPlan
    marks: dict[str, str]
    lock_holder: str | None


class RollbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to_version: str | None = Field(default=None, pattern=r"^[0-9]+$", max_length=32)
    """Version to roll back to; default: the previous champion (or the champion, while a promotion runs)."""
    reason: str = Field(default="", max_length=2000)
    """Why: kept in the audit log with the caller's name."""


class RollbackOut(BaseModel):
    deployment_id: int
    from_version: str | None
    """What served before."""
    to_version: str
    """What serves now, and is champion."""
    slot: str | None
    """The slot that now takes all traffic (None without serving slots: the ``alias`` strategy)."""
    warm: bool
    aborted_deployment: int | None
    """The promotion this rollback ended, if one was under way."""
    switch_ms: float


class PromoteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: str = Field(pattern=r"^[0-9]+$", max_length=32)
    """The registered model version to promote (see GET /v1/promotion/next)."""
    reason: str = Field(min_length=1, max_length=2000)
    """Why: kept with the DAG run and in the audit log with the caller's name."""


class PromoteOut(BaseModel):
    dag_id: str
    """Always ``clm_promotion``."""
    dag_run_id: str
    """The Airflow run that gates and deploys the version (its triggering user is the caller)."""
    version: str


def deployment_page(
    cfg, page, kind: str | None = None, status: str | None = None, version: str | None = None
) -> dict[str, Any]:
    from clm_lib.db.models import Deployment
    from clm_lib.deploy import history

    where = []
    if kind:
        where.append(Deployment.kind == kind)
    if status:
        where.append(Deployment.status == status)
    if version:
        where.append((Deployment.version == version) | (Deployment.from_version == version))
    with reading(cfg.database_url) as s:
        total = s.scalar(select(func.count(Deployment.id)).where(*where)) or 0
        stmt = select(Deployment).where(*where).order_by(Deployment.id.desc()).offset(page.offset).limit(page.limit)
        items = [history.as_dict(d) for d in s.scalars(stmt)]
    return {"items": items, "total": total, "offset": page.offset, "limit": page.limit}


def deployment_detail(cfg, deployment_id: int) -> dict[str, Any]:
    from clm_lib.db.models import Deployment
    from clm_lib.deploy import history

    with reading(cfg.database_url) as s:
        dep = s.get(Deployment, deployment_id)
        if dep is None:
            raise HTTPException(404, f"no deployment #{deployment_id}")
        return history.as_dict(dep, history.events_of(s, deployment_id))


def do_rollback(cfg, body: RollbackRequest, actor: str) -> dict[str, Any]:
    from clm_lib.deploy.rollback import rollback

    return rollback(cfg, body.to_version, actor=actor, reason=body.reason).as_dict()


@router.get("/deployments", dependencies=READ, response_model=Page[DeploymentOut])
def deployments(
    cfg: ConfigDep,
    page: PageDep,
    kind: Annotated[Literal["promotion", "rollback"] | None, Query(description="Only promotions or rollbacks.")] = None,
    status: Annotated[str | None, Query(max_length=32, pattern=r"^[a-z_]+$", description="e.g. promoted.")] = None,
    version: Annotated[str | None, Query(max_length=32, pattern=r"^[0-9]+$", description="Moved to/from it.")] = None,
) -> dict[str, Any]:
    """Promotions and rollbacks, newest first."""
    return deployment_page(cfg, page, kind, status, version)


@router.get("/deployments/{deployment_id}", dependencies=READ, response_model=DeploymentDetail)
def deployment(cfg: ConfigDep, deployment_id: DeploymentId) -> dict[str, Any]:
    """One deployment with every step it took; 404 names an unknown id."""
    return deployment_detail(cfg, deployment_id)


@router.get("/serving", dependencies=READ, response_model=ServingOut)
def serving(cfg: ConfigDep) -> dict[str, Any]:
    """The aliases, the promotion under way, and what each slot serves (when serving is configured)."""
    from clm_lib.deploy.state import serving_state

    return serving_state(cfg)


@router.get("/promotion/next", dependencies=READ, response_model=NextPromotion)
def next_promotion(cfg: ConfigDep) -> Any:
    """How the next promotion will go (strategy, steps, bake window, safety rules, gate, approval) from the
    configuration in force now, and the registered versions that may be promoted with their last gate decision."""
    return build_next_promotion(cfg)


@router.post("/promote", dependencies=operate(PROMOTION_DAG), status_code=202, response_model=PromoteOut)
def promote(cfg: ConfigDep, body: PromoteRequest, actor: ActorDep, request: Request) -> Any:
    """Trigger ``clm_promotion`` for ``version`` as the caller (their token: Airflow's RBAC applies); audited as
    ``promotion.requested``. 202: the run is queued and its gate decides. 404: no such registered version; 409:
    it is the champion or a deployment is under way."""
    from clm_api.v1.training import airflow_url, caller_token
    from clm_lib.airflow.dag_trigger import RunRefused
    from clm_lib.airflow.promote import airflow_problem, request_promotion
    from clm_lib.services.airflow_client import AirflowAPIError

    try:
        run_id = request_promotion(cfg, body.version, airflow_url=airflow_url(request), token=caller_token(request),
                                   reason=body.reason, actor=actor)  # fmt: skip
    except RunRefused as exc:
        raise HTTPException(422, [{"loc": ["body", "reason"], "msg": str(exc), "type": "value_error"}]) from None
    except UnknownVersion as exc:
        raise HTTPException(404, str(exc)) from None
    except AirflowAPIError as exc:
        status, message = airflow_problem(exc)
        raise HTTPException(status, message) from None
    return PromoteOut(dag_id=PROMOTION_DAG, dag_run_id=run_id, version=body.version)


@router.post("/rollback", dependencies=OPERATE, response_model=RollbackOut)
def rollback(cfg: ConfigDep, body: RollbackRequest, actor: ActorDep) -> dict[str, Any]:
    """Put the previous champion (or ``to_version``) on all traffic and make it champion; audited with the
    caller's name. 409 when there is nowhere to go or another deployment holds the lock."""
    return do_rollback(cfg, body, actor)
