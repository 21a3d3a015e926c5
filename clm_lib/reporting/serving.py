"""The serving screen: what each slot serves and with how much traffic, the aliases, the deployment under way
(or the last one) step by step, the deployment history, and whether a rollback has somewhere to go.

What serves now is :func:`clm_lib.deploy.state.read_serving`'s reading (the one reader of the serving state, also
behind the REST API's ``/serving``); this module adds what only the screen shows: MLflow's champion and challenger
cards, the deployment history and the steps of the deployment it details. Read-only and tolerant like the other
screens: no database file, serving never started, a dead or hung router and an unreachable MLflow are states the
page explains, never exceptions; reading creates no store and starts no process.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from clm_lib.config import ClmConfig
from clm_lib.db import session_scope
from clm_lib.db.models import Deployment
from clm_lib.deploy.state import (
    NO_SERVING,
    NOT_STARTED,
    READ_TIMEOUT_S,
    BackendState,
    RollbackOption,
    RollbackTarget,
    SlotView,
    read_serving,
)
from clm_lib.registry.aliases import ALL
from clm_lib.reporting import deployments
from clm_lib.reporting.deployments import DeploymentView
from clm_lib.reporting.next_promotion import NextPromotion, build_next_promotion
from clm_lib.reporting.overview import RegistryState, registry_state
from clm_lib.reporting.stores import first_line, redact_url

if TYPE_CHECKING:
    from clm_lib.serving.backends.base import ServingBackend

log = logging.getLogger(__name__)

__all__ = [
    "NOT_STARTED", "NO_SERVING", "BackendState", "RollbackOption", "RollbackTarget", "ServingPage", "SlotView",
    "build_serving",
]  # fmt: skip


@dataclass(frozen=True)
class ServingPage:
    generated_at: datetime
    model_name: str
    strategy: str
    traffic_steps: list[int]
    backend: str
    database_url: str
    database_problem: str | None
    registry: RegistryState
    aliases: dict[str, str | None]
    serving: BackendState
    current: DeploymentView | None
    """The promotion under way, else the newest deployment."""
    history: list[DeploymentView]
    focus: DeploymentView | None
    """The deployment the page was asked to report on (the rollback just made)."""
    rollback: RollbackOption
    lock_holder: str | None
    """Who changes what serves right now (the deploy lock's holder)."""
    marks: dict[str, str] = field(default_factory=dict)
    """Versions rolled back or rejected (and not champion since), and why: shown wherever a version is named."""
    next_promotion: NextPromotion | None = None
    """How the next promotion will go (from the live configuration) and what may be promoted."""
    plans: dict[int, str] = field(default_factory=dict)
    """Per listed promotion, the strategy, steps and bake window it recorded when it started, in words."""


def build_serving(
    cfg: ClmConfig,
    *,
    backend: ServingBackend | None = None,
    focus: int | None = None,
    history_limit: int = 15,
    read_timeout_s: float = READ_TIMEOUT_S,
) -> ServingPage:
    """:func:`~clm_lib.deploy.state.read_serving`'s reading, MLflow's cards and clm's deployment history in a
    :class:`ServingPage`; never raises for a missing or dead store or server."""
    registry = registry_state(cfg, versions=True)
    aliases = dict.fromkeys(ALL)
    for version, names in registry.aliases_by_version.items():
        aliases.update({a: version for a in names if a in aliases})
    state = read_serving(
        cfg, backend=backend, aliases=aliases, registry_status=registry.status, read_timeout_s=read_timeout_s
    )
    history: list[DeploymentView] = []
    plans: dict[int, str] = {}
    focused = None
    problem = state.database_problem
    if problem is None:
        try:
            with session_scope(cfg.database_url) as s:
                history, focused = deployments.read(s, limit=history_limit, focus=focus)
                plans = _plans(s, {d.id for d in history} | ({focused.id} if focused else set()))
        except SQLAlchemyError as exc:
            log.warning("serving page: cannot read clm database %s", redact_url(cfg.database_url), exc_info=True)
            problem = f"cannot read clm's database: {first_line(exc)}. Run `clm init` to create or migrate it."
    active = next((d for d in history if d.active), None)
    return ServingPage(
        generated_at=datetime.now(UTC),
        model_name=state.model_name,
        strategy=state.strategy,
        traffic_steps=state.traffic_steps,
        backend=cfg.serving.backend,
        database_url=redact_url(cfg.database_url),
        database_problem=problem,
        registry=registry,
        aliases=state.aliases,
        serving=state.serving,
        current=active or (history[0] if history else None),
        history=history,
        focus=focused,
        rollback=state.rollback,
        lock_holder=state.lock_holder,
        marks=state.marks,
        next_promotion=build_next_promotion(cfg, registry),
        plans=plans,
    )


def _plans(session, ids: set[int]) -> dict[int, str]:
    rows = session.execute(select(Deployment.id, Deployment.details).where(Deployment.id.in_(ids))) if ids else []
    out = {}
    for dep_id, details in rows:
        words = plan_words((details or {}).get("plan") if isinstance(details, dict) else None)
        if words:
            out[dep_id] = words
    return out


def plan_words(plan: object) -> str | None:
    """A recorded plan (:func:`clm_lib.deploy.rollout.used_plan`) in words, e.g. "canary 10 → 50 → 100% · bake
    60 s"; None when there is none or it is not one (rows written by an older clm)."""
    if not isinstance(plan, dict) or not isinstance(plan.get("strategy"), str):
        return None
    words = plan["strategy"].replace("_", "-")
    steps = plan.get("steps")
    if isinstance(steps, list) and steps and all(isinstance(x, int) for x in steps):
        words += " " + " → ".join(str(x) for x in steps) + "%"
    bake = plan.get("bake_seconds")
    if isinstance(bake, int | float) and not isinstance(bake, bool) and plan["strategy"] != "alias":
        words += f" · bake {bake:g} s"
    return words
