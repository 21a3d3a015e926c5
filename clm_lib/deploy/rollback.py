"""One-click rollback: the REST route, ``clm rollback`` and the ``clm_rollback`` DAG all call :func:`rollback`.

Where it goes is :func:`clm_lib.deploy.plan.plan_rollback`'s decision over clm's deployment history: only to a
version that served as champion before (anything else goes through the promotion path), by default the newest
earlier champion not rolled back or rejected since. Then, under the deploy lock:

1. an intent row (a ``rollback`` deployment, ``pending``) is committed before anything changes;
2. a promotion under way is ended (its candidate's weight back to 0);
3. traffic moves (a weight flip to the warm slot, or the target loaded into the idle slot, then the flip);
4. the row is ``completed``: from here clm's history says the target is champion;
5. MLflow's aliases are written from that history, ``champion`` before ``previous``
   (:func:`clm_lib.deploy.reconcile.sync_aliases`), and written again from it after a failed write.

Before each serving change (the promotion's weights, loading the target, the flip, each alias write) it checks
the deploy lock's fencing token (:meth:`~clm_lib.deploy.lock.Lease.fence`): a rollback that lost the lock changes
nothing more. A rollback that dies between 1 and 4 is settled by the next one from what serves. MLflow is read
only to confirm that a named version still exists: the champion comes from the history, so a half-written alias
pair cannot send a retried rollback back to the bad version.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from clm_lib import audit
from clm_lib.config import ClmConfig
from clm_lib.db import session_scope
from clm_lib.db.models import Deployment, utcnow
from clm_lib.deploy import history
from clm_lib.deploy.lock import Lease, LeaseLost
from clm_lib.deploy.plan import ACTIVE, RollbackPlan, current_champion, plan_rollback
from clm_lib.deploy.reconcile import expected_aliases, sync_aliases
from clm_lib.deploy.rollout import alias_fence, locked, serving_backend
from clm_lib.deploy.slots import all_on, idle_slot, serving_slot
from clm_lib.errors import DeployError, ServingError
from clm_lib.faults import fault_point
from clm_lib.registry.aliases import CHAMPION, PREVIOUS
from clm_lib.registry.mlflow_registry import aliases, client

if TYPE_CHECKING:
    from collections.abc import Callable

    from clm_lib.serving.backends.base import ServingBackend

log = logging.getLogger(__name__)

MAX_REASON = 2000
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
"""Control characters other than tab and line breaks: a reason is text people read in the audit log."""


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
    """From the call (waiting for the deploy lock included) to all traffic on ``slot``."""

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def check_reason(reason: str) -> str:
    """The reason as it is stored; :class:`DeployError` for one that is too long or holds control characters."""
    reason = reason.strip()
    if len(reason) > MAX_REASON:
        raise DeployError(f"the reason is longer than {MAX_REASON} characters; say it in fewer words")
    bad = _CONTROL.search(reason)
    if bad:
        raise DeployError(
            f"the reason contains a control character ({bad.group()!r} at position {bad.start()}); "
            "write it as plain text"
        )
    return reason or "no reason given"


def rollback(
    cfg: ClmConfig,
    to_version: str | None = None,
    *,
    actor: str | None = None,
    reason: str = "",
    backend: ServingBackend | None = None,
    only_if: Callable[[RollbackPlan, str | None], str | None] | None = None,
    end_as: str = "aborted",
) -> RollbackResult:
    """Put ``to_version`` (default: the newest earlier champion not rolled back or rejected, or the champion while
    a promotion is under way) on all traffic and make it champion. Raises :class:`DeployError` saying why and what
    to do instead when that cannot be done.

    ``only_if(plan, champion)``, called under the lock once the plan is made, returns why not to go on (refused,
    nothing changed) or None: the reconciler and the guard check there that what they judged still holds.
    ``end_as``: the status of the promotion it ends (the reconciler's ``abandoned``)."""
    called, called_at = time.perf_counter(), utcnow()
    actor = actor or audit.default_actor()
    reason = check_reason(reason)
    be = serving_backend(cfg, backend) if cfg.deploy.strategy != "alias" else None
    with locked(cfg, f"rollback by {actor}") as lease:
        settled = _settle_interrupted(cfg, be)
        with session_scope(cfg.database_url) as s:
            records = history.records(s, cfg.registry.model_name)
        champion = current_champion(records) or _mlflow_champion(cfg)
        if champion is None and not any(r.kind == "promotion" and r.status in ACTIVE for r in records):
            raise DeployError(f"nothing to roll back to: {cfg.registry.model_name} has no champion yet")
        plan = plan_rollback(records, champion, to_version)
        if only_if is not None and (why := only_if(plan, champion)) is not None:
            _refuse(cfg, actor, why, lease)
        if to_version is None and plan.ends is None and settled:
            # The rollback that died had moved the traffic: this call is most likely its retry (an Airflow task
            # retry, a second click), and a default rollback now would go one version further back.
            _refuse(cfg, actor, (
                f"rollback #{settled[-1][0]} was interrupted after it put version {settled[-1][1]} on all traffic, "
                "and is now recorded as completed. Nothing more was moved, so that a retry does not roll back "
                "twice; roll back again to go further back, or name a version with --to VERSION"
            ), lease)  # fmt: skip
        if not plan.ok:
            _refuse(cfg, actor, plan.refusal, lease)
        if to_version is None and plan.ends is None:
            _check_aliases_agree(cfg, records, actor, plan, lease)
        if be is None and plan.target is not None and plan.target != champion:
            # With serving, _switch checks only when it must load the version cold: a warm slot already serves
            # it, and asking MLflow first would cost a registry round trip (and, in a fresh CLI process, MLflow's
            # multi-second import) between the call and the switch.
            _check_registered(cfg, plan.target)  # before anything changes
        if plan.target == champion and plan.ends is None and (be is None or _serves_all(be, champion)):
            _refuse(cfg, actor, f"version {champion} is already the champion and serves all traffic; nothing to do",
                    lease)  # fmt: skip
        ending = plan.target is None  # only the promotion under way ends: its candidate never became champion
        from_version = plan.ends_version if ending else champion
        target = champion if ending else plan.target
        dep_id = _intent(cfg, from_version, target, actor, reason, called_at, plan)
        fault_point("rollback.after_intent")
        try:
            aborted = _abort_promotion(cfg, be, actor, reason, end_as, lease=lease) if plan.ends is not None else None
            fault_point("rollback.before_switch")
            if ending:
                slot, warm = (aborted or {}).get("stable_slot"), True
            else:
                slot, warm = (None, True) if be is None else _switch(cfg, be, target, champion, lease)
            fault_point("rollback.after_switch")
        except LeaseLost:
            raise  # the intent stays pending: the lock's new holder, or the next rollback, settles it
        except Exception as exc:
            _finish(cfg, dep_id, "failed", f"traffic not moved: {exc}")
            raise
        switch_ms = 1000 * (time.perf_counter() - called)
        _switched(cfg, dep_id, from_version, target, slot, warm, switch_ms)
        fault_point("rollback.after_commit")
        _write_aliases(cfg, dep_id, target, actor, reason, lease)
    log.warning("rollback by %s: %s -> %s (%s)", actor, from_version, target, reason)
    return RollbackResult(dep_id, from_version, target, slot, warm, plan.ends, switch_ms)


def reconcile(cfg: ClmConfig, *, actor: str | None = None) -> list:
    """``clm rollback --reconcile``: set MLflow's aliases from clm's history, under the deploy lock."""
    from clm_lib.deploy.reconcile import reconcile_aliases

    with locked(cfg, f"alias reconciliation by {actor or audit.default_actor()}") as lease:
        return reconcile_aliases(cfg, actor=actor, reason="reconciled from clm's deployment history",
                                 before_write=alias_fence(lease))  # fmt: skip


def _refuse(cfg: ClmConfig, actor: str, why: str, lease: Lease | None = None) -> None:
    """Nothing moves; the aliases are still set from the history (a failed earlier write is repaired here too)."""
    fence = alias_fence(lease) if lease is not None else None
    _, error = sync_aliases(cfg, actor=actor, reason="set from clm's deployment history", before_write=fence)
    if error is not None:
        why += f" (MLflow's aliases could not be set from clm's history either: {error})"
    raise DeployError(why)


def _check_aliases_agree(cfg: ClmConfig, records, actor: str, plan: RollbackPlan, lease: Lease) -> None:
    """Refuse a default rollback while MLflow's aliases disagree with clm's history: the last deployment did not
    finish writing them (its caller may be retrying right now, not asking for a second rollback), or someone
    moved them by hand. The aliases are set from the history on the way out."""
    want = expected_aliases(records)
    try:
        have = aliases(cfg)
    except Exception:  # MLflow unreadable: the history alone decides, as it does for the target
        return
    if want is None or all(have.get(a) == want[a] for a in (CHAMPION, PREVIOUS)):
        return
    last = max((r for r in records if r.made_champion), key=lambda r: r.id)
    _refuse(cfg, actor, (
        f"MLflow's aliases (champion {have.get(CHAMPION)}, {PREVIOUS} {have.get(PREVIOUS)}) disagree with clm's "
        f"deployment history, which says version {want[CHAMPION]} is champion since {last.kind} #{last.id}: that "
        "deployment did not finish writing them, or they were moved by hand. Nothing was moved, so that a retry "
        f"does not roll back twice; roll back again to go to version {plan.target}, or name one with --to VERSION"
    ), lease)  # fmt: skip


def _mlflow_champion(cfg: ClmConfig) -> str | None:
    """The champion when clm's history made none (set before clm's first deployment)."""
    return aliases(cfg).get(CHAMPION)


def _check_registered(cfg: ClmConfig, version: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client(cfg).get_model_version(cfg.registry.model_name, version)
    except MlflowException:
        raise DeployError(f"version {version} of {cfg.registry.model_name} is not registered in MLflow") from None


def _settle_interrupted(cfg: ClmConfig, be: ServingBackend | None) -> list[tuple[int, str]]:
    """End the intent rows of rollbacks that died before they finished: ``completed`` when their target serves all
    traffic (the switch happened), else ``failed``. Returns ``(id, version)`` of those settled as completed."""
    done = []
    with session_scope(cfg.database_url) as s:
        stale = select(Deployment).where(Deployment.kind == "rollback", Deployment.status == "pending")
        for dep in s.scalars(stale).all():
            try:
                switched = be is not None and _serves_all(be, dep.version)
            except ServingError:
                switched = False
            outcome = "interrupted " + ("after traffic moved" if switched else "before traffic moved")
            history.event(s, dep, "switch", "info", f"{outcome}; settled by the next rollback")
            history.finish(s, dep, "completed" if switched else "failed", outcome)
            if switched:
                done.append((dep.id, dep.version))
    return done


def _intent(cfg, from_version, target, actor, reason, called_at: datetime, plan: RollbackPlan) -> int:
    """Commit the rollback's row before anything changes: a crash from here on leaves a trace the next one settles."""
    with session_scope(cfg.database_url) as s:
        dep = history.open_deployment(
            s, cfg, kind="rollback", version=target, from_version=from_version, strategy="rollback",
            status="pending", actor=actor, reason=reason, started_at=called_at,
        )  # fmt: skip
        dep.details = {"plan": plan.reason, "ends": plan.ends}
        return dep.id


def _finish(cfg: ClmConfig, dep_id: int, status: str, outcome: str) -> None:
    with session_scope(cfg.database_url) as s:
        dep = history.load(s, dep_id)
        history.event(s, dep, "switch", "failed", outcome)
        history.finish(s, dep, status, outcome)


def _switched(cfg, dep_id, from_version, target, slot, warm, switch_ms) -> None:
    """Traffic moved: commit it. From here clm's history names ``target`` champion."""
    with session_scope(cfg.database_url) as s:
        dep = history.load(s, dep_id)
        dep.slot = slot
        how = "a weight flip to the warm slot" if warm else "loaded into the idle slot, then switched"
        where = f"all traffic on {slot} ({how}), {switch_ms:.0f} ms after the call" if slot else "no serving"
        history.event(s, dep, "switch", "ok", f"{from_version} -> {target}: {where}",
                      weights=all_on(slot) if slot else None,
                      metrics={"switch_ms": switch_ms, "warm": warm})  # fmt: skip
        history.finish(s, dep, "completed", dep.reason)


def _write_aliases(cfg: ClmConfig, dep_id: int, target: str, actor: str, reason: str, lease: Lease) -> None:
    moves, error = sync_aliases(cfg, actor=actor, reason=f"rollback: {reason}", before_write=alias_fence(lease))
    with session_scope(cfg.database_url) as s:
        want = expected_aliases(history.records(s, cfg.registry.model_name)) or {}
        dep = history.load(s, dep_id)
        said = f"champion = {want.get(CHAMPION)}, {PREVIOUS} = {want.get(PREVIOUS) or '(none)'}"
        if error is None:
            history.event(s, dep, "aliases", "ok", said if moves else f"aliases unchanged: {said}")
            return
        history.event(s, dep, "aliases", "failed", f"MLflow refused ({error}); clm's history says {said}")
    raise DeployError(
        f"all traffic is on version {target} (rollback #{dep_id} completed), but MLflow's aliases could not be "
        f"written: {error}. clm's deployment history is right and the next rollback sets them from it; "
        "`clm rollback --reconcile` does it now"
    )


def _abort_promotion(
    cfg: ClmConfig,
    be: ServingBackend | None,
    actor: str,
    reason: str,
    status: str = "aborted",
    *,
    lease: Lease | None = None,
) -> dict | None:
    """End the promotion under way, if any: its candidate's traffic back to the stable slot."""
    with session_scope(cfg.database_url) as s:
        dep = history.active_deployment(s)
        if dep is None:
            return None
        weights = None
        if be is not None and dep.stable_slot and dep.status in ("canary", "baked", "deployed"):
            if lease is not None:
                lease.fence()
            be.set_weights(all_on(dep.stable_slot))
            weights = be.weights()
        outcome = f"{status} by {actor}'s rollback: {reason}"
        history.event(s, dep, "rollback", "info", outcome, weights=weights, actor=actor)
        history.finish(s, dep, status, outcome)
        return history.as_dict(dep)


def _serves_all(be: ServingBackend, version: str) -> bool:
    status, weights = be.status(), be.weights()
    live = serving_slot(status, weights, version)
    return live is not None and weights.get(live) == 100


def _switch(cfg: ClmConfig, be: ServingBackend, target: str, champion: str, lease: Lease) -> tuple[str, bool]:
    """All traffic onto a slot serving ``target``: the warm one if it has it, else load it into the idle one."""
    status, weights = be.status(), be.weights()
    live = serving_slot(status, weights)
    if live is not None and status[live].version == target and weights.get(live) == 100:
        return live, True
    slot = idle_slot(weights, live)
    warm = status.get(slot) is not None and status[slot].version == target and status[slot].healthy
    if not warm:
        _check_registered(cfg, target)  # before anything changes
        try:
            lease.fence()
            loaded = be.deploy(slot, target)
            if not loaded.healthy:
                raise ServingError(f"{slot} did not become healthy: {loaded.detail or 'no detail'}")
            be.smoke_test(slot)
        except ServingError as exc:
            raise DeployError(
                f"cannot roll back to version {target}: {exc}; champion {champion} keeps serving"
            ) from None
    lease.fence()
    be.set_weights(all_on(slot))
    return slot, warm
