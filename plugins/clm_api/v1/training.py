"""Training runs, their continual strategies, and "retrain now": ``/clm/api/v1/training/...``, ``/strategy/...``.

The same functions as the Training pipeline and Continual strategy screens: :mod:`clm_lib.reporting.training`,
:mod:`clm_lib.reporting.strategy`, and :func:`clm_lib.airflow.retrain.request_retraining` for the one mutation,
which triggers ``clm_continual_training`` through Airflow's REST API with the caller's own token (Airflow's RBAC
applies, the run's triggering user is the caller) and is audited. Unknown run: 404 naming it; a bad filter: 422
naming the field; clm's database unreadable: 503 naming it and since when. Answers are those modules' dataclasses.
"""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from clm_api.deps import READ, ActorDep, ConfigDep, PageDep, operate
from clm_api.v1 import answers
from clm_lib.reporting import domain, training
from clm_lib.reporting import strategy as strategies
from clm_lib.reporting.domain import DomainAdaptations
from clm_lib.reporting.strategy import RunStrategy, StrategyHistory
from clm_lib.reporting.training import NextCheck, RunDetail, RunPage

router = APIRouter(tags=["training"])

RunId = Annotated[str, Path(max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:+-]*$",
                            description="A training run's id (see GET /v1/training/runs).")]  # fmt: skip
answer = partial(answers.answer, not_found=(training.NotFound,), bad_filter=(training.BadFilter,))


class RetrainRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=2000, pattern=r"\S")
    """Why: kept with the run (its conf) and in the audit log with the caller's name."""


class RetrainOut(BaseModel):
    dag_id: str
    dag_run_id: str


@router.get("/training/runs", dependencies=READ, response_model=RunPage)
def runs(
    cfg: ConfigDep,
    page: PageDep,
    status: Annotated[Literal[training.STATUSES] | None, Query(description="Only runs in this state.")] = None,  # type: ignore[valid-type]
    trigger: Annotated[Literal[training.TRIGGER_KINDS] | None, Query(description="Only runs started so.")] = None,  # type: ignore[valid-type]
) -> Any:
    """Training runs, newest first, with what triggered them."""
    return answer(lambda: training.list_runs(cfg, status=status, trigger=trigger, offset=page.offset,
                                             limit=page.limit))  # fmt: skip


@router.get("/training/runs/{run_id}", dependencies=READ, response_model=RunDetail)
def run(cfg: ConfigDep, run_id: RunId) -> Any:
    """One run: the drift checks that requested it with every detector's statistic, its step loss curve, its MLflow
    run and the promotions of its model version."""
    return answer(lambda: training.run_detail(cfg, run_id))


@router.get("/training/runs/{run_id}/strategy", dependencies=READ, response_model=RunStrategy)
def run_strategy(cfg: ConfigDep, run_id: RunId) -> Any:
    """What each continual strategy recorded in this run: replay buffer and weights, EWC, distillation, freezing."""
    return answer(lambda: strategies.run_strategy(cfg, run_id))


@router.get("/training/schedule", dependencies=READ, response_model=NextCheck)
def schedule(cfg: ConfigDep) -> Any:
    """When the drift monitor checks next (from the last check clm stored), and whether it is overdue."""
    return training.schedule(cfg)


@router.get("/strategy/history", dependencies=READ, response_model=StrategyHistory)
def strategy_history(
    cfg: ConfigDep,
    limit: Annotated[int, Query(ge=1, le=strategies.MAX_HISTORY, description="Newest succeeded runs.")] = 50,
) -> Any:
    """Succeeded runs' strategies, oldest first: replay buffer composition and replay fraction over time."""
    return strategies.history(cfg, limit)


def airflow_url(request: Request) -> str:
    """Airflow's root: ``CLM_AIRFLOW_URL``, else the address this request came in on, without clm's prefix."""
    from clm_lib.airflow.retrain import airflow_url as configured_or

    return configured_or(str(request.base_url).rstrip("/").removesuffix("/clm/api"))


def caller_token(request: Request) -> str:
    """The JWT the caller authenticated with (Bearer header first, else the UI's cookie), as Airflow reads it."""
    from airflow.api_fastapi.auth.managers.base_auth_manager import COOKIE_NAME_JWT_TOKEN

    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return request.cookies.get(COOKIE_NAME_JWT_TOKEN, "")


@router.get("/strategy/domain", dependencies=READ, response_model=DomainAdaptations)
def strategy_domain(cfg: ConfigDep) -> Any:
    """Domain-adapted bases (``clm adapt-domain``), newest first, each with its before/after comparison: original
    and new-domain tasks scored on the base before and the adapted base after."""
    return domain.domain_adaptations(cfg)


@router.post("/training/retrain", dependencies=operate(training.TRAINING_DAG), response_model=RetrainOut)
def retrain(cfg: ConfigDep, body: RetrainRequest, actor: ActorDep, request: Request) -> Any:
    """Trigger ``clm_continual_training`` now with ``{"force": true, "reason": ...}`` as the caller (their token,
    so Airflow's RBAC applies); audited as ``training.requested``. Returns the Airflow DAG run id."""
    from clm_lib.airflow.retrain import RetrainRefused, airflow_problem, request_retraining
    from clm_lib.services.airflow_client import AirflowAPIError

    try:
        run_id = request_retraining(cfg, airflow_url=airflow_url(request), token=caller_token(request),
                                    reason=body.reason, actor=actor)  # fmt: skip
    except RetrainRefused as exc:
        raise answers.unprocessable("body", "reason", str(exc)) from None
    except AirflowAPIError as exc:
        status, message = airflow_problem(exc)
        raise HTTPException(status, message) from None
    return RetrainOut(dag_id=training.TRAINING_DAG, dag_run_id=run_id)
