"""The serving screen: what each slot serves and with how much traffic, the aliases, the deployment under way
(or the last one) step by step, the deployment history, and whether a rollback has somewhere to go.

Read-only and tolerant like the other screens: no database file, serving never started, a dead or hung router
and an unreachable MLflow are states the page explains, never exceptions; reading creates no store and starts
no process. The serving backend is asked in a worker thread with a deadline of ``read_timeout_s`` (a hung
router or Kubernetes API would otherwise hold the page), and the router's own health check gets 1 s.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

import httpx
from sqlalchemy.exc import SQLAlchemyError

from clm_lib.config import ClmConfig
from clm_lib.db import session_scope
from clm_lib.deploy.lock import current_holder
from clm_lib.deploy.promotion import PREVIOUS
from clm_lib.reporting import deployments
from clm_lib.reporting.deployments import DeploymentView
from clm_lib.reporting.overview import CHALLENGER, CHAMPION, RegistryState, registry_state
from clm_lib.reporting.stores import first_line, missing_sqlite, redact_url
from clm_lib.serving.backends.base import SLOTS

if TYPE_CHECKING:
    from clm_lib.serving.backends.base import ServingBackend

log = logging.getLogger(__name__)

READ_TIMEOUT_S = 2.0
_ROUTER_TIMEOUT = httpx.Timeout(1.0, connect=0.5)
# Few workers: reads stuck on a hung backend cannot pile up; later page views then wait at most the deadline.
_READER = ThreadPoolExecutor(max_workers=2, thread_name_prefix="clm-serving-read")

NO_SERVING = (
    "deploy.strategy is alias: clm moves the champion alias only and runs no serving slots "
    "(a serving layer follows models:/<name>@champion itself)."
)
NOT_STARTED = (
    "Serving has not been started: no slot has a model yet. The first promotion (clm_promotion, `clm promote`) "
    "loads the champion, or `clm slots deploy blue <version>` does by hand."
)


@dataclass(frozen=True)
class SlotView:
    slot: str
    version: str | None
    healthy: bool
    weight: int
    role: Literal["live", "canary", "idle", "empty"]
    detail: str
    url: str | None
    pid: int | None
    pods: list[str]
    aliases: list[str]


@dataclass(frozen=True)
class ServingState:
    """What the serving backend said. ``status``: ok; off (``deploy.strategy: alias``); not_started (no slot
    has a model); unreachable (the backend did not answer); error (it cannot be built from the config)."""

    status: Literal["ok", "off", "not_started", "unreachable", "error"]
    message: str
    slots: list[SlotView] = field(default_factory=list)
    router_url: str | None = None
    router_problem: str | None = None
    """Why the router is not answering (None: it answers, or this backend has no router of its own)."""


@dataclass(frozen=True)
class RollbackTarget:
    version: str | None
    """None: the default target (``previous``, or the champion while a promotion is under way)."""
    label: str


@dataclass(frozen=True)
class RollbackOption:
    """Whether the rollback button can do something, and what: its targets, the first being the default."""

    possible: bool
    why_not: str | None
    targets: list[RollbackTarget]


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
    serving: ServingState
    current: DeploymentView | None
    """The promotion under way, else the newest deployment."""
    history: list[DeploymentView]
    focus: DeploymentView | None
    """The deployment the page was asked to report on (the rollback just made)."""
    rollback: RollbackOption
    lock_holder: str | None
    """Who changes what serves right now (the deploy lock's holder)."""


def build_serving(
    cfg: ClmConfig,
    *,
    backend: ServingBackend | None = None,
    focus: int | None = None,
    history_limit: int = 15,
    read_timeout_s: float = READ_TIMEOUT_S,
) -> ServingPage:
    """Read clm's database, MLflow and the serving backend into a :class:`ServingPage`; never raises for a
    missing or dead store or server."""
    registry = registry_state(cfg)
    aliases = {a: None for a in (CHAMPION, PREVIOUS, CHALLENGER)}
    for version, names in registry.aliases_by_version.items():
        aliases.update({a: version for a in names if a in aliases})
    history: list[DeploymentView] = []
    focused = None
    former: list[tuple[str, datetime | None, int]] = []
    holder = None
    problem = missing_sqlite(cfg.database_url)
    if problem is None:
        try:
            with session_scope(cfg.database_url) as s:
                history, focused = deployments.read(s, limit=history_limit, focus=focus)
                former = deployments.former_champions(s)
            holder = current_holder(cfg.database_url)
        except SQLAlchemyError as exc:
            log.warning("serving page: cannot read clm database %s", redact_url(cfg.database_url), exc_info=True)
            problem = f"cannot read clm's database: {first_line(exc)}. Run `clm init` to create or migrate it."
    else:
        problem = f"no clm database yet at {problem}; `clm init` creates it."
    active = next((d for d in history if d.active), None)
    current = active or (history[0] if history else None)
    serving = _serving_state(cfg, backend, aliases, active, read_timeout_s)
    return ServingPage(
        generated_at=datetime.now(UTC),
        model_name=cfg.registry.model_name,
        strategy=cfg.deploy.strategy,
        traffic_steps=cfg.deploy.steps(),
        backend=cfg.serving.backend,
        database_url=redact_url(cfg.database_url),
        database_problem=problem,
        registry=registry,
        aliases=aliases,
        serving=serving,
        current=current,
        history=history,
        focus=focused,
        rollback=rollback_option(registry, aliases, active, former),
        lock_holder=holder,
    )


def rollback_option(
    registry: RegistryState,
    aliases: dict[str, str | None],
    active: DeploymentView | None,
    former: list[tuple[str, datetime | None, int]],
) -> RollbackOption:
    """Where :func:`clm_lib.deploy.rollback.rollback` would go, decided the same way, or why it cannot."""
    if registry.status == "unreachable":
        return RollbackOption(False, "MLflow cannot be read, so the champion and the previous version are unknown.", [])
    champion, previous = aliases[CHAMPION], aliases[PREVIOUS]
    if champion is None:
        return RollbackOption(False, "Nothing to roll back to: no version is champion yet.", [])
    targets = []
    if active is not None:
        targets.append(RollbackTarget(None, f"end promotion #{active.id} of v{active.version}: "
                                            f"v{champion} keeps all traffic"))  # fmt: skip
    elif previous is not None and previous != champion:
        targets.append(RollbackTarget(None, f"v{previous} (previous champion)"))
    skip = {champion, None if active is not None else previous, active.version if active else None}
    for version, when, dep_id in former:
        if version not in skip:
            stamp = when.strftime("%Y-%m-%d %H:%M UTC") if when else "earlier"
            targets.append(RollbackTarget(version, f"v{version} (champion since {stamp}, deployment #{dep_id})"))
    if not targets:
        return RollbackOption(
            False, f"No previous version: v{champion} is the first champion, so there is nothing to roll back to.", []
        )
    return RollbackOption(True, None, targets)


def _serving_state(cfg, backend, aliases, active, timeout_s: float) -> ServingState:
    if cfg.deploy.strategy == "alias":
        return ServingState("off", NO_SERVING)
    future = _READER.submit(_ask_backend, cfg, backend)
    try:
        status, router_url, router_problem = future.result(timeout=timeout_s)
    except TimeoutError:
        future.cancel()
        return ServingState("unreachable", f"the {cfg.serving.backend} serving backend did not answer within "
                                           f"{timeout_s:g} s; what serves cannot be shown.")  # fmt: skip
    except Exception as exc:  # a backend that cannot even be built (config, no cluster) is a state of the page
        log.warning("serving page: cannot read the %s backend", cfg.serving.backend, exc_info=True)
        return ServingState("error", f"cannot read the {cfg.serving.backend} serving backend: {first_line(exc)}")
    by_version: dict[str, list[str]] = {}
    for alias, version in aliases.items():
        if version is not None:
            by_version.setdefault(version, []).append(alias)
    slots = [_slot(status[s], by_version, active) for s in SLOTS if s in status]
    if not any(s.version for s in slots):
        return ServingState("not_started", NOT_STARTED, slots, router_url)
    return ServingState("ok", "", slots, router_url, router_problem)


def _ask_backend(cfg: ClmConfig, backend: ServingBackend | None):
    from clm_lib.deploy.rollout import serving_backend

    be = serving_backend(cfg, backend)
    router_url = getattr(be, "router_url", None)
    router_problem = _router_problem(router_url) if router_url else None
    return be.status(), router_url, router_problem


def _router_problem(url: str) -> str | None:
    try:
        with httpx.Client(timeout=_ROUTER_TIMEOUT, trust_env=False) as http:
            resp = http.get(f"{url}/healthz")
    except httpx.HTTPError as exc:
        return f"the router at {url} is not answering ({type(exc).__name__}): clients cannot reach any slot"
    if resp.status_code != 200:
        try:
            detail = resp.json().get("status") or f"HTTP {resp.status_code}"
        except ValueError:
            detail = f"HTTP {resp.status_code}"
        return f"the router at {url} answers, but {detail}"
    return None


def _slot(st, by_version: dict[str, list[str]], active: DeploymentView | None) -> SlotView:
    if st.version is None:
        role = "empty"
    elif st.weight == 0:
        role = "idle"
    elif active is not None and active.slot == st.slot and st.weight < 100:
        role = "canary"
    else:
        role = "live"
    return SlotView(
        slot=st.slot,
        version=st.version,
        healthy=st.healthy,
        weight=st.weight,
        role=role,
        detail=st.detail,
        url=st.url,
        pid=st.pid,
        pods=list(st.pods),
        aliases=sorted(by_version.get(st.version, [])) if st.version else [],
    )
