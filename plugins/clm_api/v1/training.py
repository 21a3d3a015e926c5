"""Training runs, their continual strategies, and "retrain now": ``/clm/api/v1/training/...``, ``/strategy/history``.

The same functions as the Training pipeline and Continual strategy screens: :mod:`clm_lib.reporting.training`,
:mod:`clm_lib.reporting.strategy`, and :func:`clm_lib.airflow.retrain.request_retraining` for the one mutation,
which triggers ``clm_continual_training`` through Airflow's REST API with the caller's own token (Airflow's RBAC
applies, the run's triggering user is the caller) and is audited. Unknown run: 404 naming it; a bad filter: 422
naming the field; clm's database unreadable: 503 naming it and since when.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, HTTPException, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from clm_api.deps import READ, ActorDep, ConfigDep, Page, PageDep, operate
from clm_lib.reporting import strategy as strategies
from clm_lib.reporting import training

router = APIRouter(tags=["training"])

T = TypeVar("T")
RunId = Annotated[str, Path(max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:+-]*$",
                            description="A training run's id (see GET /v1/training/runs).")]  # fmt: skip


def _answer(call: Callable[[], T]) -> T:
    try:
        return call()
    except training.NotFound as exc:
        raise HTTPException(404, str(exc)) from None
    except training.BadFilter as exc:
        raise HTTPException(422, [{"loc": ["query", exc.field], "msg": str(exc), "type": "value_error"}]) from None


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class TriggerOut(_Out):
    kind: str
    """drift, volume, manual, sensor, asset or other."""
    summary: str
    reason: str | None
    """What the person who triggered it said (untrusted text)."""
    plan: str | None
    run_type: str | None
    drift_check_ids: list[str]
    detectors: list[str]


class TrainingRunOut(_Out):
    id: str
    status: str
    """running, succeeded, failed, skipped or interrupted."""
    trigger: TriggerOut
    started_at: datetime | None
    finished_at: datetime | None
    duration_s: float | None
    model_version: str | None
    parent_model_version: str | None
    new_rows: int
    replay_rows: int
    tasks: list[str]
    steps: int | None
    final_loss: float | None
    airflow_dag_id: str | None
    airflow_run_id: str | None
    airflow_path: str | None
    """The run's grid, relative to Airflow's root."""
    error: str | None


class VerdictOut(_Out):
    detector: str
    status: str
    drift: bool | None
    statistic: float | None
    p_value: float | None
    threshold: float | None
    n_reference: int
    n_current: int
    explanation: str
    triggered: bool
    suppressed_reason: str | None


class CheckOut(_Out):
    check_id: str
    checked_at: datetime | None
    retrain_requested: bool
    summary: str
    verdicts: list[VerdictOut]
    reference_version: int | None
    current_version: int | None
    champion_version: str | None


class LossCurveOut(_Out):
    source: str | None
    steps: list[int]
    losses: list[float]
    total_steps: int
    first: float | None
    last: float | None
    lowest: float | None
    problem: str | None


class MlflowRunOut(_Out):
    tracking_uri: str
    experiment_id: str | None
    run_id: str | None
    url: str | None
    problem: str | None


class PromotionOut(_Out):
    id: int
    kind: str
    status: str
    strategy: str
    started_at: datetime | None
    outcome: str


class TrainingRunDetail(_Out):
    run: TrainingRunOut
    checks: list[CheckOut]
    metrics: dict[str, Any]
    curated_version: int | None
    previous_curated_version: int | None
    replay_version: int | None
    base_model: str
    config_hash: str
    loss: LossCurveOut
    mlflow: MlflowRunOut | None
    promotions: list[PromotionOut]


class NextCheckOut(_Out):
    last_check_at: datetime | None
    next_at: datetime
    overdue: bool
    schedule: str


class ReplayOut(_Out):
    mix_ratio: float | None
    effective_mix_ratio: float | None
    replay_fraction: float | None
    policy: str | None
    buffer_examples: int | None
    buffer_tasks: dict[str, int]
    buffer_tasks_after: dict[str, int]
    buffer_version: int | None
    buffer_version_written: int | None
    task_weights: dict[str, float]
    weights_from: str | None
    dynamic: bool
    replayed: dict[str, int]


class EwcOut(_Out):
    strength: float | None
    decay: float | None
    normalize: str | None
    fisher_examples: int | None
    prior_updates: int | None
    pulled_parameters: int | None
    fisher_raw_mean: float | None
    last_penalty: float | None


class DistillationOut(_Out):
    weight: float | None
    temperature: float | None
    top_k: int | None
    teacher: bool | None
    last_loss: float | None


class FreezingOut(_Out):
    embeddings: bool | None
    lowest_blocks: int | None
    patterns: list[str]
    frozen_parameters: int | None
    frozen_numel: int | None
    trainable_numel: int | None
    frozen_modules: list[str]


class SegmentOut(_Out):
    task: str
    count: int
    share: float


class RunStrategyOut(_Out):
    run_id: str
    status: str
    started_at: datetime | None
    model_version: str | None
    recorded: bool
    replay: ReplayOut | None
    ewc: EwcOut | None
    distillation: DistillationOut | None
    freezing: FreezingOut | None
    other: dict[str, dict[str, Any]]
    replay_fraction: float | None
    composition: list[SegmentOut]
    """The replay buffer after the run, per task (share in %)."""


class StrategyHistoryOut(_Out):
    runs: list[RunStrategyOut]
    """Oldest first."""
    tasks: list[str]


class RetrainRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=2000, pattern=r"\S")
    """Why: kept with the run (its conf) and in the audit log with the caller's name."""


class RetrainOut(BaseModel):
    dag_id: str
    dag_run_id: str


@router.get("/training/runs", dependencies=READ, response_model=Page[TrainingRunOut])
def runs(
    cfg: ConfigDep,
    page: PageDep,
    status: Annotated[Literal[training.STATUSES] | None, Query(description="Only runs in this state.")] = None,  # type: ignore[valid-type]
    trigger: Annotated[Literal[training.TRIGGER_KINDS] | None, Query(description="Only runs started so.")] = None,  # type: ignore[valid-type]
) -> Any:
    """Training runs, newest first, with what triggered them."""
    found = _answer(lambda: training.list_runs(cfg, status=status, trigger=trigger, offset=page.offset,
                                               limit=page.limit))  # fmt: skip
    return Page[TrainingRunOut](items=[TrainingRunOut.model_validate(r) for r in found.items], total=found.total,
                                offset=found.offset, limit=found.limit)  # fmt: skip


@router.get("/training/runs/{run_id}", dependencies=READ, response_model=TrainingRunDetail)
def run(cfg: ConfigDep, run_id: RunId) -> Any:
    """One run: the drift checks that requested it with every detector's statistic, its step loss curve, its MLflow
    run and the promotions of its model version."""
    return TrainingRunDetail.model_validate(_answer(lambda: training.run_detail(cfg, run_id)))


@router.get("/training/runs/{run_id}/strategy", dependencies=READ, response_model=RunStrategyOut)
def run_strategy(cfg: ConfigDep, run_id: RunId) -> Any:
    """What each continual strategy recorded in this run: replay buffer and weights, EWC, distillation, freezing."""
    return RunStrategyOut.model_validate(_answer(lambda: strategies.run_strategy(cfg, run_id)))


@router.get("/training/schedule", dependencies=READ, response_model=NextCheckOut)
def schedule(cfg: ConfigDep) -> Any:
    """When the drift monitor checks next (from the last check clm stored), and whether it is overdue."""
    return NextCheckOut.model_validate(training.schedule(cfg))


@router.get("/strategy/history", dependencies=READ, response_model=StrategyHistoryOut)
def strategy_history(
    cfg: ConfigDep,
    limit: Annotated[int, Query(ge=1, le=strategies.MAX_HISTORY, description="Newest succeeded runs.")] = 50,
) -> Any:
    """Succeeded runs' strategies, oldest first: replay buffer composition and replay fraction over time."""
    return StrategyHistoryOut.model_validate(strategies.history(cfg, limit))


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
        raise HTTPException(422, [{"loc": ["body", "reason"], "msg": str(exc), "type": "value_error"}]) from None
    except AirflowAPIError as exc:
        status, message = airflow_problem(exc)
        raise HTTPException(status, message) from None
    return RetrainOut(dag_id=training.TRAINING_DAG, dag_run_id=run_id)
