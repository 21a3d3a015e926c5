"""What serves now: the one reader of the serving state (issue #9), :func:`read_serving`.

The aliases, the promotion under way, what each slot runs with its weight and health, who holds the deploy lock,
and what the rollback button would do (:func:`clm_lib.deploy.plan.plan_rollback`, the decision the rollback itself
takes). The REST API's ``/serving`` is :func:`serving_state` (this reading as JSON); the Serving screen
(:mod:`clm_lib.reporting.serving`) builds its page from the same reading, adding the deployment history.

Tolerant: a missing database, an unreachable MLflow, a hung or unbuildable serving backend are states in the
result, never exceptions; reading creates no store and starts no process. The serving backend and MLflow are asked
in a worker thread with a deadline of ``read_timeout_s`` each.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import httpx
from sqlalchemy.exc import SQLAlchemyError

from clm_lib.config import ClmConfig
from clm_lib.db import first_line, missing_sqlite, session_scope
from clm_lib.deploy import history as deploy_history
from clm_lib.deploy.lock import current_holder
from clm_lib.deploy.plan import ACTIVE, Former, Record, current_champion, plan_rollback
from clm_lib.deploy.plan import marks as version_marks
from clm_lib.redaction import redact_url
from clm_lib.registry.aliases import ALL, CHAMPION
from clm_lib.serving.backends.base import SLOTS

if TYPE_CHECKING:
    from clm_lib.db.models import Deployment
    from clm_lib.serving.backends.base import ServingBackend

log = logging.getLogger(__name__)

READ_TIMEOUT_S = 2.0
_ROUTER_TIMEOUT = httpx.Timeout(1.0, connect=0.5)
# Few workers: reads stuck on a hung backend cannot pile up; later reads then wait at most the deadline.
_READER = ThreadPoolExecutor(max_workers=2, thread_name_prefix="clm-serving-read")

NO_SERVING = (
    "deploy.strategy is alias: clm moves the champion alias only and runs no serving slots "
    "(a serving layer follows models:/<name>@champion itself)."
)
NOT_STARTED = (
    "Serving has not been started: no slot has a model yet. The first promotion (clm_promotion, `clm promote`) "
    "loads the champion, or `clm slots deploy blue <version>` does by hand."
)
RegistryStatus = Literal["ok", "empty", "unreachable"]


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
class BackendState:
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
    """None: the default target (:func:`~clm_lib.deploy.plan.plan_rollback`'s choice)."""
    label: str


@dataclass(frozen=True)
class RollbackOption:
    """Whether the rollback button can do something, and what: its targets, the first being the default when
    there is one (``version`` None). Decided by :func:`~clm_lib.deploy.plan.plan_rollback`, as the rollback does."""

    possible: bool
    why_not: str | None
    """Why nothing can be done, or (with named targets only) why there is no default."""
    targets: list[RollbackTarget]


@dataclass(frozen=True)
class ServingState:
    model_name: str
    strategy: str
    traffic_steps: list[int]
    aliases: dict[str, str | None]
    registry_status: RegistryStatus
    database_problem: str | None
    active: dict[str, Any] | None
    """The promotion under way (JSON-ready), if any."""
    serving: BackendState
    rollback: RollbackOption
    lock_holder: str | None
    """Who changes what serves right now (the deploy lock's holder)."""
    marks: dict[str, str] = field(default_factory=dict)
    """Versions rolled back or rejected (and not champion since), and why: shown wherever a version is named."""
    records: list[Record] = field(default_factory=list)


def read_serving(
    cfg: ClmConfig,
    *,
    backend: ServingBackend | None = None,
    aliases: dict[str, str | None] | None = None,
    registry_status: RegistryStatus | None = None,
    read_timeout_s: float = READ_TIMEOUT_S,
) -> ServingState:
    """Read clm's database, MLflow's aliases and the serving backend; never raises for a missing or dead store or
    server. ``aliases`` / ``registry_status``: MLflow as the caller already read it (the screen reads more of it)."""
    if aliases is None or registry_status is None:
        registry_status, aliases = read_aliases(cfg, read_timeout_s)
    aliases = {a: aliases.get(a) for a in ALL}
    records: list[Record] = []
    active = holder = None
    problem = missing_sqlite(cfg.database_url)
    if problem is None:
        try:
            with session_scope(cfg.database_url) as s:
                records = deploy_history.records(s, cfg.registry.model_name)
                marked = {v: m.text for v, m in version_marks(records).items()}
                row = deploy_history.active_deployment(s)
                active = _active(row, marked) if row is not None else None
            holder = current_holder(cfg.database_url)
        except SQLAlchemyError as exc:
            log.warning("serving state: cannot read clm database %s", redact_url(cfg.database_url), exc_info=True)
            problem = f"cannot read clm's database: {first_line(exc)}. Run `clm init` to create or migrate it."
            records, active = [], None
    else:
        problem = f"no clm database yet at {problem}; `clm init` creates it."
    return ServingState(
        model_name=cfg.registry.model_name,
        strategy=cfg.deploy.strategy,
        traffic_steps=cfg.deploy.steps(),
        aliases=aliases,
        registry_status=registry_status,
        database_problem=problem,
        active=active,
        serving=_backend_state(cfg, backend, aliases, active, read_timeout_s),
        rollback=rollback_option(registry_status, aliases, records),
        lock_holder=holder,
        marks={v: m.text for v, m in version_marks(records).items()},
        records=records,
    )


def serving_state(cfg: ClmConfig, backend: ServingBackend | None = None) -> dict[str, Any]:
    """The REST API's ``/serving``: :func:`read_serving` as JSON."""
    return payload(read_serving(cfg, backend=backend))


def payload(state: ServingState) -> dict[str, Any]:
    """The reading as JSON: the same aliases, slots and rollback decision the Serving screen shows."""
    served = state.serving.status in ("ok", "not_started")
    return {
        "model": state.model_name,
        "strategy": state.strategy,
        "aliases": state.aliases,
        "registry": state.registry_status,
        "active_deployment": state.active,
        "slots": {s.slot: asdict(s) for s in state.serving.slots} if served else None,
        "weights": {s.slot: s.weight for s in state.serving.slots} if served else None,
        "serving_error": state.serving.message if state.serving.status in ("unreachable", "error") else None,
        "router_problem": state.serving.router_problem,
        "database_problem": state.database_problem,
        "rollback": {
            "possible": state.rollback.possible,
            "why_not": state.rollback.why_not,
            "targets": [asdict(t) for t in state.rollback.targets],
        },
        "marks": state.marks,
        "lock_holder": state.lock_holder,
    }


def rollback_option(
    registry_status: RegistryStatus, aliases: dict[str, str | None], records: list[Record]
) -> RollbackOption:
    """What :func:`clm_lib.deploy.rollback.rollback` would do, as :func:`~clm_lib.deploy.plan.plan_rollback` decides
    it for the rollback itself, or why it cannot."""
    champion = current_champion(records) or aliases.get(CHAMPION)
    if champion is None and registry_status == "unreachable":
        return RollbackOption(False, "MLflow cannot be read and clm's history names no champion, so there is "
                                     "nothing known to roll back to.", [])  # fmt: skip
    plan = plan_rollback(records, champion)
    named = [RollbackTarget(f.version, _label(f)) for f in plan.eligible if f.version != plan.target]
    if plan.ok:
        return RollbackOption(True, None, [RollbackTarget(None, plan.reason), *named])
    if champion is not None and not plan.eligible:
        why = f"No previous version: v{champion} is the first champion, so there is nothing to roll back to."
    else:
        why = plan.refusal[0].upper() + plan.refusal[1:] + "."
    return RollbackOption(bool(named), why, named)


def _label(f: Former) -> str:
    if f.deployment_id is None:
        since = "champion before clm's first recorded deployment"
    else:
        stamp = f.at.strftime("%Y-%m-%d %H:%M UTC") if f.at else "earlier"
        since = f"champion since {stamp}, deployment #{f.deployment_id}"
    return f"v{f.version} ({since}{'; ' + f.mark.text if f.mark else ''})"


def _active(dep: Deployment, marked: dict[str, str]) -> dict[str, Any]:
    """The promotion under way as JSON (a promotion: no switch time, no warm flag)."""
    return {
        "id": dep.id,
        "kind": dep.kind,
        "version": dep.version,
        "from_version": dep.from_version,
        "strategy": dep.strategy,
        "status": dep.status,
        "slot": dep.slot,
        "stable_slot": dep.stable_slot,
        "actor": dep.actor,
        "reason": dep.reason or "",
        "outcome": dep.outcome or "",
        "started_at": _iso(dep.started_at),
        "finished_at": _iso(dep.finished_at),
        "switch_ms": None,
        "warm": None,
        "marks": {v: marked[v] for v in (dep.version, dep.from_version) if v in marked},
    }


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None  # SQLite hands back naive datetimes; clm writes UTC
    return (value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)).isoformat()


# --- MLflow ----------------------------------------------------------------------------------------


def read_aliases(cfg: ClmConfig, timeout_s: float = READ_TIMEOUT_S) -> tuple[RegistryStatus, dict[str, str | None]]:
    """MLflow's aliases of the model, bounded and tolerant: ``empty`` before the first version (no store is created),
    ``unreachable`` when MLflow does not answer within ``timeout_s``."""
    none = dict.fromkeys(ALL)
    if missing_sqlite(cfg.tracking_uri):
        return "empty", none
    future = _READER.submit(_mlflow_aliases, cfg)
    try:
        found = future.result(timeout=timeout_s)
    except Exception:  # a timeout or any MLflow failure is a state of the reading
        log.warning("serving state: cannot read MLflow at %s", redact_url(cfg.tracking_uri), exc_info=True)
        return "unreachable", none
    if found is None:
        return "empty", none
    return "ok", {**none, **{a: v for a, v in found.items() if a in none}}


def _mlflow_aliases(cfg: ClmConfig) -> dict[str, str] | None:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    c = MlflowClient(tracking_uri=cfg.tracking_uri, registry_uri=cfg.tracking_uri)
    try:
        model = c.get_registered_model(cfg.registry.model_name)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise
    return {str(k): str(v) for k, v in (model.aliases or {}).items()}


# --- the serving backend -----------------------------------------------------------------------------


def _backend_state(cfg, backend, aliases, active: dict | None, timeout_s: float) -> BackendState:
    if cfg.deploy.strategy == "alias":
        return BackendState("off", NO_SERVING)
    future = _READER.submit(_ask_backend, cfg, backend)
    try:
        status, router_url, router_problem = future.result(timeout=timeout_s)
    except TimeoutError:
        future.cancel()
        return BackendState("unreachable", f"the {cfg.serving.backend} serving backend did not answer within "
                                           f"{timeout_s:g} s; what serves cannot be shown.")  # fmt: skip
    except Exception as exc:  # a backend that cannot even be built (config, no cluster) is a state of the reading
        log.warning("serving state: cannot read the %s backend", cfg.serving.backend, exc_info=True)
        return BackendState("error", f"cannot read the {cfg.serving.backend} serving backend: {first_line(exc)}")
    by_version: dict[str, list[str]] = {}
    for alias, version in aliases.items():
        if version is not None:
            by_version.setdefault(version, []).append(alias)
    slots = [_slot(status[s], by_version, active) for s in SLOTS if s in status]
    if not any(s.version for s in slots):
        return BackendState("not_started", NOT_STARTED, slots, router_url)
    return BackendState("ok", "", slots, router_url, router_problem)


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


def _slot(st, by_version: dict[str, list[str]], active: dict | None) -> SlotView:
    if st.version is None:
        role = "empty"
    elif st.weight == 0:
        role = "idle"
    elif active is not None and active["slot"] == st.slot and st.weight < 100 and active["status"] in ACTIVE:
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
