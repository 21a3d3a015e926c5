"""One-click rollback: the REST route, ``clm rollback`` and the ``clm_rollback`` DAG all call :func:`rollback`.

Traffic moves first (a weight flip to the warm slot, or the named version loaded into the idle slot and then
the flip), then the aliases: ``champion`` to the version now serving, ``previous`` to the one it replaced, so
a second rollback undoes the first. A promotion under way is ended first (its candidate's weight back to 0).
It all runs under the deploy lock, so a rollback and a promotion step never interleave, and ``champion``
always names a version that a slot serves.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from clm_lib import audit
from clm_lib.config import ClmConfig
from clm_lib.db import session_scope
from clm_lib.deploy import history
from clm_lib.deploy.promotion import PREVIOUS, move_champion
from clm_lib.deploy.rollout import locked, serving_backend
from clm_lib.deploy.slots import all_on, idle_slot, serving_slot
from clm_lib.errors import DeployError, ServingError
from clm_lib.registry.mlflow_registry import CHAMPION, aliases, client

if TYPE_CHECKING:
    from clm_lib.serving.backends.base import ServingBackend

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RollbackResult:
    deployment_id: int
    from_version: str | None
    """What served before."""
    to_version: str
    """What serves now, and is champion."""
    slot: str | None
    """The slot that now takes all traffic (None without serving: the ``alias`` strategy)."""
    warm: bool
    """The version was already loaded: the switch was a weight flip."""
    aborted_deployment: int | None
    """The promotion this rollback ended, if one was under way."""
    switch_ms: float
    """From taking the lock to all traffic on ``slot``."""

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def rollback(
    cfg: ClmConfig,
    to_version: str | None = None,
    *,
    actor: str | None = None,
    reason: str = "",
    backend: ServingBackend | None = None,
) -> RollbackResult:
    """Put ``to_version`` (default: ``previous``, or the champion while a promotion is under way) on all
    traffic and make it champion. Raises :class:`DeployError` with what to do when that cannot be done."""
    actor = actor or audit.default_actor()
    reason = reason.strip() or "no reason given"
    name = cfg.registry.model_name
    be = serving_backend(cfg, backend) if cfg.deploy.strategy != "alias" else None
    with locked(cfg, f"rollback by {actor}"):
        t0 = time.perf_counter()
        # One registry round trip for champion and previous: against an MLflow server each call is a request,
        # and everything before the switch is time the bad version keeps its traffic.
        current = aliases(cfg)
        champion = current.get(CHAMPION)
        if to_version is not None:
            _check_registered(cfg, to_version)  # before anything changes
        aborted = _abort_promotion(cfg, be, actor, reason)
        if champion is None:
            ended = f"promotion #{aborted['id']} of version {aborted['version']} was ended, but " if aborted else ""
            raise DeployError(f"{ended}nothing to roll back to: {name} has no champion yet")
        if aborted is not None and to_version in (None, champion):
            # Ending the promotion was the rollback: its candidate never became champion.
            return _record(cfg, aborted["version"], champion, aborted["stable_slot"], True, aborted["id"],
                           t0, actor, reason)  # fmt: skip
        target = to_version or current.get(PREVIOUS)
        if target is None:
            raise DeployError(
                f"no previous version to roll back to: {name}@{PREVIOUS} is not set (version {champion} is the "
                "first champion); name a version with --to VERSION"
            )
        if target == champion and (be is None or _serves_all(be, target)):
            raise DeployError(f"version {target} is already the champion and serves all traffic; nothing to do")
        slot, warm = (None, True) if be is None else _switch(cfg, be, target, champion)
        return _record(cfg, champion, target, slot, warm, aborted and aborted["id"], t0, actor, reason)


def _check_registered(cfg: ClmConfig, version: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client(cfg).get_model_version(cfg.registry.model_name, version)
    except MlflowException:
        raise DeployError(f"version {version} of {cfg.registry.model_name} is not registered in MLflow") from None


def _abort_promotion(cfg: ClmConfig, be: ServingBackend | None, actor: str, reason: str) -> dict | None:
    """End the promotion under way, if any: its candidate's traffic back to the stable slot."""
    with session_scope(cfg.database_url) as s:
        dep = history.active_deployment(s)
        if dep is None:
            return None
        weights = None
        if be is not None and dep.stable_slot and dep.status in ("canary", "baked", "deployed"):
            be.set_weights(all_on(dep.stable_slot))
            weights = be.weights()
        outcome = f"aborted by {actor}'s rollback: {reason}"
        history.event(s, dep, "rollback", "info", outcome, weights=weights, actor=actor)
        history.finish(s, dep, "aborted", outcome)
        return history.as_dict(dep)


def _serves_all(be: ServingBackend, version: str) -> bool:
    status, weights = be.status(), be.weights()
    live = serving_slot(status, weights, version)
    return live is not None and weights.get(live) == 100


def _switch(cfg: ClmConfig, be: ServingBackend, target: str, champion: str) -> tuple[str, bool]:
    """All traffic onto a slot serving ``target``: the warm one if it has it, else load it into the idle one."""
    status, weights = be.status(), be.weights()
    live = serving_slot(status, weights)
    if live is not None and status[live].version == target and weights.get(live) == 100:
        return live, True
    slot = idle_slot(weights, live)
    warm = status.get(slot) is not None and status[slot].version == target and status[slot].healthy
    if not warm:
        try:
            loaded = be.deploy(slot, target)
            if not loaded.healthy:
                raise ServingError(f"{slot} did not become healthy: {loaded.detail or 'no detail'}")
            be.smoke_test(slot)
        except ServingError as exc:
            raise DeployError(
                f"cannot roll back to version {target}: {exc}; champion {champion} keeps serving"
            ) from None
    be.set_weights(all_on(slot))
    return slot, warm


def _record(cfg, from_version, to_version, slot, warm, aborted_id, t0, actor, reason) -> RollbackResult:
    switch_ms = 1000 * (time.perf_counter() - t0)
    with session_scope(cfg.database_url) as s:
        dep = history.open_deployment(
            s, cfg, kind="rollback", version=to_version, from_version=from_version,
            strategy="rollback", status="completed", actor=actor, reason=reason,
        )  # fmt: skip
        dep.slot = slot
        how = "a weight flip to the warm slot" if warm else "loaded into the idle slot, then switched"
        where = f"all traffic on {slot} ({how}) in {switch_ms:.0f} ms" if slot else "no serving (alias strategy)"
        history.event(s, dep, "switch", "ok", f"{from_version} -> {to_version}: {where}",
                      weights=all_on(slot) if slot else None,
                      metrics={"switch_ms": switch_ms, "warm": warm})  # fmt: skip
        if move_champion(cfg, s, to_version, actor=actor, reason=f"rollback: {reason}") != to_version:
            history.event(s, dep, "aliases", "ok", f"champion = {to_version}, {PREVIOUS} = {from_version}")
        else:  # ending a promotion: its candidate never became champion
            history.event(s, dep, "aliases", "ok", f"aliases unchanged: champion stays {to_version}")
        history.finish(s, dep, "completed", reason)
        dep_id = dep.id
    log.warning("rollback by %s: %s -> %s (%s)", actor, from_version, to_version, reason)
    return RollbackResult(dep_id, from_version, to_version, slot, warm, aborted_id, switch_ms)
