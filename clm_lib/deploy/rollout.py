"""A promotion with serving: gate → deploy to the idle slot → smoke test → traffic steps, each baked → aliases.

At the first breached safety rule the candidate's weight goes back to 0 and the stable slot takes all traffic
again (Argo Rollouts' abort); the ``champion`` alias moves only after the last step baked clean, so it always
names a version that served every request of its slot. The old slot stays loaded: a rollback is a weight flip.

The steps are separate functions so the Airflow DAG shows each as a task; :func:`rollout` runs them in order
(``clm promote``). A step changes serving only under the deploy lock, and re-checks under it that its
deployment is still active. Bake windows run without the lock, so a manual rollback can end a rollout between
two steps; the rollout notices at its next check and stops. Before each serving change (a slot loaded or stopped,
weights, an alias write) the step checks the lock's fencing token (:meth:`~clm_lib.deploy.lock.Lease.fence`): a
step that lost the lock stops there with :class:`~clm_lib.deploy.lock.LeaseLost` and changes nothing more.

A step that died (its task is retried) is re-run from where the deployment stands: ``deploy`` loads the
candidate again when it finds the deployment ``deploying``, and ``canary`` resumes at the traffic step the
candidate had reached (that step bakes again), taking the deployment over from the attempt that died.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from clm_lib.alerts.sources import rolled_back
from clm_lib.config import ClmConfig
from clm_lib.db import session_scope
from clm_lib.deploy import history, safety
from clm_lib.deploy.golden import GoldenSet
from clm_lib.deploy.lock import Lease, LeaseLost, deploy_lock
from clm_lib.deploy.promotion import gate
from clm_lib.deploy.reconcile import sync_aliases
from clm_lib.deploy.slots import all_on, idle_slot, serving_slot, split
from clm_lib.errors import DeployBusyError, DeployError, RegistryError, ServingError
from clm_lib.faults import fault_point
from clm_lib.registry.aliases import CHALLENGER, CHAMPION
from clm_lib.registry.mlflow_registry import alias_version, client

if TYPE_CHECKING:
    from clm_lib.serving.backends.base import ServingBackend

log = logging.getLogger(__name__)

AUTO: Any = object()
"""Default of ``golden``: load the golden set of the candidate from the lake."""


class GoldenProbe(Protocol):
    def score(self, backend: ServingBackend, slot: str) -> float: ...


@dataclass(frozen=True)
class RolloutResult:
    deployment_id: int
    version: str
    status: str
    """promoted | gate_failed | failed | rolled_back | aborted | skipped (or a step's status, mid-way)."""
    champion_before: str | None
    champion_after: str | None
    outcome: str

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def locked(cfg: ClmConfig, label: str, wait_seconds: float | None = None):
    d = cfg.deploy
    wait = d.lock_wait_seconds if wait_seconds is None else wait_seconds
    return deploy_lock(cfg.database_url, label, wait_seconds=wait, lease_seconds=d.lock_lease_seconds)


def alias_fence(lease: Lease):
    """The hook :func:`~clm_lib.deploy.reconcile.sync_aliases` calls before each alias write: the fence."""

    def before_write(alias: str) -> None:
        fault_point("deploy.before_alias_write")  # @2: champion written, previous not yet
        lease.fence()

    return before_write


def serving_backend(cfg: ClmConfig, backend: ServingBackend | None = None) -> ServingBackend:
    if backend is not None:
        return backend
    from clm_lib.serving.backends import get_backend

    return get_backend(cfg)


def _snapshot(cfg: ClmConfig, deployment_id: int) -> dict[str, Any]:
    with session_scope(cfg.database_url) as s:
        return history.as_dict(history.load(s, deployment_id))


def _set(cfg: ClmConfig, deployment_id: int, **fields: Any) -> None:
    with session_scope(cfg.database_url) as s:
        dep = history.load(s, deployment_id)
        for key, value in fields.items():
            setattr(dep, key, value)


def used_plan(cfg: ClmConfig) -> dict[str, Any]:
    """What a promotion records of its configuration: strategy, traffic steps, bake window and safety rules."""
    d = cfg.deploy
    return {"strategy": d.strategy, "steps": d.steps(), "bake_seconds": d.bake_seconds,
            "rules": d.rules.model_dump(mode="json")}  # fmt: skip


def start(cfg: ClmConfig, version: str | None = None, *, actor: str | None = None, reason: str = "") -> int:
    """Open a promotion of ``version`` (default: the challenger) and run the gate; returns the deployment id."""
    version = version or alias_version(cfg, CHALLENGER)
    if version is None:
        raise RegistryError(f"no candidate to promote: {cfg.registry.model_name} has no challenger")
    with locked(cfg, f"promotion of version {version}"), session_scope(cfg.database_url) as s:
        champion = alias_version(cfg, CHAMPION)  # under the lock: a rollback may have just moved it
        active = history.active_deployment(s)
        if active is not None and active.status == "pending":
            # Gated but never deployed (its DAG run died or was cleared): it has not touched serving, so a newer
            # promotion replaces it. Its own deploy step, should it still run, finds it ended and stops.
            outcome = f"superseded by the promotion of version {version} before it was deployed"
            history.event(s, active, "gate", "info", outcome)
            history.finish(s, active, "superseded", outcome)
        elif active is not None:
            raise DeployBusyError(
                f"deployment #{active.id} ({active.kind} of version {active.version}) is still {active.status}: "
                "wait for it to end, or end it with `clm rollback`"
            )
        dep = history.open_deployment(
            s, cfg, kind="promotion", version=version, from_version=champion,
            strategy=cfg.deploy.strategy, status="pending", actor=actor, reason=reason,
        )  # fmt: skip
        dep.details = {"plan": used_plan(cfg)}  # the settings it ran with, should the config change meanwhile
        if champion == version:
            history.event(s, dep, "gate", "info", f"version {version} is already the champion")
            history.finish(s, dep, "skipped", "already champion")
            return dep.id
        result = gate(cfg, s, version, champion)
        dep.details = {**dep.details, "gate": result.reasons}
        history.event(s, dep, "gate", "ok" if result.passed else "failed", "; ".join(result.reasons))
        if not result.passed:
            history.finish(s, dep, "gate_failed", f"gate failed against champion {champion}")
        deployment_id = dep.id
    fault_point("promotion.after_gate")  # committed, the task's XCom not pushed yet
    return deployment_id


def deploy(cfg: ClmConfig, deployment_id: int, *, backend: ServingBackend | None = None) -> str:
    """Load the candidate into the idle slot and smoke-test it; returns the deployment's status."""
    dep = _snapshot(cfg, deployment_id)
    if dep["status"] not in ("pending", "deploying") or dep["strategy"] == "alias":
        return dep["status"]
    be = serving_backend(cfg, backend)
    version, champion = dep["version"], dep["from_version"]
    with locked(cfg, f"deploy of version {version}") as lease:
        resumed = _snapshot(cfg, deployment_id)["status"]
        if resumed not in ("pending", "deploying"):  # a rollback ended it while we waited
            return resumed
        slot = None
        try:
            now = alias_version(cfg, CHAMPION)
            if now != champion:  # it was gated against another champion than the one serving now
                raise DeployError(f"the champion changed from {champion} to {now} since the gate; promote it again")
            status, weights = be.status(), be.weights()
            stable = serving_slot(status, weights, champion) if champion else None
            if stable is None and champion is not None:
                stable = _bring_up_champion(cfg, deployment_id, be, champion, lease)
                weights = be.weights()
            slot = idle_slot(weights, stable)
            _set(cfg, deployment_id, slot=slot, stable_slot=stable, status="deploying")
            again = " again (the attempt that was loading it stopped)" if resumed == "deploying" else ""
            history.step(cfg, deployment_id, "deploy", "info", f"loading {version} into {slot}{again}" + (
                f" while {stable} serves champion {champion}" if stable else " (nothing serves yet)"))  # fmt: skip
            fault_point("promotion.deploy.before_load")
            lease.fence()
            loaded = be.deploy(slot, version)
            if not loaded.healthy:
                raise ServingError(f"{slot} did not become healthy: {loaded.detail or 'no detail'}")
            be.smoke_test(slot)
            fault_point("promotion.deploy.after_load")
        except LeaseLost:
            raise  # another holder owns serving now: change nothing, record nothing
        except Exception as exc:  # whatever failed, the deployment ends here and says why
            outcome = f"version {version} could not be deployed: {exc}"
            keeps = f"; champion {champion} keeps serving" if champion else ""
            with contextlib.suppress(ServingError, LeaseLost):
                if slot is not None and be.weights().get(slot, 0) == 0:
                    lease.fence()
                    be.stop(slot)  # a half-loaded slot holds memory and serves nobody
            with session_scope(cfg.database_url) as s:
                d = history.load(s, deployment_id)
                history.event(s, d, "deploy", "failed", outcome + keeps)
                history.finish(s, d, "failed", outcome)
            if isinstance(exc, ServingError):
                raise DeployError(outcome + keeps) from None
            raise
        history.step(cfg, deployment_id, "smoke_test", "ok", f"{slot} serves {version} and answered a completion")
        _set(cfg, deployment_id, status="deployed")
    return "deployed"


def _bring_up_champion(cfg: ClmConfig, deployment_id: int, be: ServingBackend, champion: str, lease: Lease) -> str:
    """The champion serves from no slot (serving was just set up): load it first, so there is something to
    canary against and to roll back to."""
    slot = idle_slot(be.weights(), None)
    lease.fence()
    be.deploy(slot, champion)
    be.smoke_test(slot)
    lease.fence()
    be.set_weights(all_on(slot))
    history.step(cfg, deployment_id, "baseline", "ok", f"champion {champion} served from no slot: loaded into "
                 f"{slot} with all traffic", weights=be.weights())  # fmt: skip
    return slot


def canary(
    cfg: ClmConfig, deployment_id: int, *, backend: ServingBackend | None = None, golden: GoldenProbe | None = AUTO
) -> str:
    """Shift traffic step by step, baking after each; roll back at the first breach. Returns the status."""
    dep = _snapshot(cfg, deployment_id)
    if dep["status"] not in ("deployed", "canary"):
        return dep["status"]
    be = serving_backend(cfg, backend)
    version, slot, stable = dep["version"], dep["slot"], dep["stable_slot"]
    steps = cfg.deploy.steps() if stable else [100]
    attempt = uuid.uuid4().hex
    if dep["status"] == "canary":  # the attempt that was shifting traffic stopped: resume at the step it reached
        reached = be.weights().get(slot, 0)
        steps = [p for p in steps if p >= reached] or [100]
        history.step(cfg, deployment_id, "traffic", "info", f"resuming the canary at {steps[0]}% ({reached}% of "
                     f"traffic was on {version}): the attempt that was shifting traffic stopped")  # fmt: skip
    elif not stable and len(cfg.deploy.steps()) > 1:
        history.step(cfg, deployment_id, "traffic", "info", "no earlier version serves: no canary, all traffic at once")
    try:
        probe = GoldenSet.load(cfg, version) if golden is AUTO else golden
        stable_score = _stable_golden(cfg, deployment_id, be, probe, stable)
        for n, percent in enumerate(steps):
            with locked(cfg, f"canary of version {version}") as lease, session_scope(cfg.database_url) as s:
                d = history.load(s, deployment_id)
                if d.status not in ("deployed", "canary"):
                    return d.status
                owner = (d.details or {}).get("canary_attempt")
                if n > 0 and owner != attempt:  # a retry took the canary over while this attempt baked
                    return d.status
                d.details = {**(d.details or {}), "canary_attempt": attempt}
                lease.fence()
                be.set_weights(split(slot, percent))
                fault_point("promotion.canary.after_weights")
                d.status = "canary"
                rest = f", {100 - percent}% on {dep['from_version']} ({stable})" if stable else ""
                history.event(s, d, "traffic", "ok", f"{percent}% of traffic on {version} ({slot}){rest}",
                              weights=be.weights())  # fmt: skip
            fault_point("promotion.canary.after_step")
            checks = _bake(cfg, deployment_id, be, slot, probe, stable_score)
            if checks is None:
                return _snapshot(cfg, deployment_id)["status"]
            summary = {"checks": [c.as_dict() for c in checks], "percent": percent}
            breached = safety.breaches(checks)
            if breached:
                return _roll_back(cfg, deployment_id, be, "; ".join(c.message for c in breached), summary)
            history.step(cfg, deployment_id, "bake", "ok", f"{percent}% baked {cfg.deploy.bake_seconds:g} s: "
                         + "; ".join(dict.fromkeys(c.message for c in checks)), metrics=summary)  # fmt: skip
    except LeaseLost:
        raise  # another holder owns serving now (a rollback, or a retry of this step): it decides, not us
    except Exception as exc:  # the candidate must not keep traffic after the rollout stopped watching it
        status = _roll_back(cfg, deployment_id, be, f"the rollout could not go on: {exc}", {})
        if isinstance(exc, ServingError | DeployBusyError):
            return status
        raise
    fault_point("promotion.canary.before_baked")
    _set(cfg, deployment_id, status="baked")
    return "baked"


def _stable_golden(cfg, deployment_id, be, probe, stable) -> float | None:
    if probe is None or stable is None:
        return None
    try:
        score = probe.score(be, stable)
    except ServingError as exc:
        history.step(cfg, deployment_id, "golden_set", "info", f"stable slot not scored ({exc}); minimum only")
        return None
    history.step(cfg, deployment_id, "golden_set", "info", f"stable slot {stable}: exact match {score:.1f}",
                 metrics={"stable_golden": score})  # fmt: skip
    return score


def _bake(cfg, deployment_id, be, slot, probe, stable_score) -> list[safety.Check] | None:
    """Watch ``slot`` for one bake window; the checks (stopping at the first breach), or None if aborted."""
    rules, window = cfg.deploy.rules, cfg.deploy
    since, deadline = time.time(), time.monotonic() + window.bake_seconds
    while True:
        if _snapshot(cfg, deployment_id)["status"] != "canary":
            return None
        try:
            checks = [safety.health(be.status().get(slot), slot)]
            if checks[0].ok:
                checks += safety.live(be.live_metrics(slot, since), rules)
        except ServingError as exc:  # a slot whose metrics cannot be read cannot be trusted with traffic
            checks = [safety.Check("metrics", False, None, None, f"cannot read {slot}'s metrics: {exc}")]
        if safety.breaches(checks):
            return checks
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        time.sleep(min(window.poll_seconds, remaining))
    if probe is not None:
        try:
            checks.append(safety.golden(probe.score(be, slot), stable_score, rules))
        except ServingError as exc:
            checks.append(safety.Check("golden_set", False, None, None, f"golden set failed: {exc}"))
    return checks


def _roll_back(cfg: ClmConfig, deployment_id: int, be: ServingBackend, why: str, metrics: dict) -> str:
    """The automatic rollback: all traffic back to the stable slot; the champion never moved."""
    # A safety action: wait longer than a user would for the lock; a manual rollback holding it ends us anyway.
    wait = max(cfg.deploy.lock_wait_seconds, 60)
    label = f"automatic rollback of deployment #{deployment_id}"
    with locked(cfg, label, wait) as lease, session_scope(cfg.database_url) as s:
        dep = history.load(s, deployment_id)
        if dep.status not in history.ACTIVE:
            return dep.status
        if dep.stable_slot:
            lease.fence()
            be.set_weights(all_on(dep.stable_slot))
            status = "rolled_back"
            outcome = f"rolled back automatically: {why}; champion {dep.from_version} serves all traffic"
        else:
            status = "failed"
            outcome = f"{why}; no earlier version to return to, so {dep.version} keeps serving without being champion"
        history.event(s, dep, "rollback", "breach", outcome, weights=be.weights(), metrics=metrics)
        history.finish(s, dep, status, outcome)
        version = dep.version
    client(cfg).set_model_version_tag(cfg.registry.model_name, version, "clm.deploy", f"{status}: {why}"[:5000])
    log.warning("deployment #%s: %s", deployment_id, outcome)
    rolled_back(cfg, version=version, deployment_id=deployment_id, how="canary", why=outcome)
    return status


def complete(cfg: ClmConfig, deployment_id: int, *, backend: ServingBackend | None = None) -> str:
    """Record the promotion once the candidate baked at 100% (``alias``: once it passed the gate), then write the
    aliases from clm's history. A retried call finds it promoted and only writes the aliases again."""
    with locked(cfg, f"completion of deployment #{deployment_id}") as lease:
        with session_scope(cfg.database_url) as s:
            dep = history.load(s, deployment_id)
            ready = "pending" if dep.strategy == "alias" else "baked"
            actor, version = dep.actor, dep.version
            why = f"deployment #{dep.id}" + (" baked at 100%" if dep.strategy != "alias" else " passed the gate")
            if dep.status not in (ready, "promoted"):
                return dep.status
            if dep.status == ready:
                if dep.strategy != "alias":
                    weights = serving_backend(cfg, backend).weights()
                    if weights.get(dep.slot) != 100:
                        outcome = f"traffic changed under the rollout ({weights}); aliases not moved"
                        history.event(s, dep, "promote", "failed", outcome, weights=weights)
                        history.finish(s, dep, "failed", outcome)
                        return "failed"
                before = dep.from_version
                where = f"; {dep.stable_slot} keeps {before} warm for a rollback" if before and dep.stable_slot else ""
                history.event(s, dep, "promote", "ok", f"champion {before or '(none)'} -> {version}{where}")
                history.finish(s, dep, "promoted", f"version {version} is champion")
        # Committed: clm's history names the candidate champion; MLflow follows it, champion first.
        fault_point("promotion.complete.after_commit")
        _, error = sync_aliases(cfg, actor=actor, reason=why, before_write=alias_fence(lease))
    if error is not None:
        raise DeployError(
            f"version {version} is promoted (deployment #{deployment_id}), but MLflow's aliases could not be "
            f"written: {error}. Run the task again, or `clm rollback --reconcile`, to set them from clm's history"
        )
    return "promoted"


def result(cfg: ClmConfig, deployment_id: int) -> RolloutResult:
    dep = _snapshot(cfg, deployment_id)
    after = dep["version"] if dep["status"] == "promoted" else dep["from_version"]
    return RolloutResult(deployment_id, dep["version"], dep["status"], dep["from_version"], after, dep["outcome"])


def rollout(
    cfg: ClmConfig,
    version: str | None = None,
    *,
    actor: str | None = None,
    reason: str = "",
    backend: ServingBackend | None = None,
    golden: GoldenProbe | None = AUTO,
) -> RolloutResult:
    """The whole promotion in this process: gate, deploy, traffic steps with bake windows, aliases.

    Refused when ``deploy.require_approval`` is on: approval is asked in Airflow (``clm_promotion``), and a
    promotion run in this process would reach traffic without it."""
    if cfg.deploy.require_approval:
        raise DeployError(
            "deploy.require_approval is on: a promotion needs a person's approval, which only the clm_promotion DAG "
            "asks for; trigger it (the Serving screen, POST /clm/api/v1/promote, or "
            "`airflow dags trigger clm_promotion -c '{\"version\": \"N\"}'`)"
        )
    deployment_id = start(cfg, version, actor=actor, reason=reason)
    if cfg.deploy.strategy != "alias" and _snapshot(cfg, deployment_id)["status"] == "pending":
        be = serving_backend(cfg, backend)
        deploy(cfg, deployment_id, backend=be)
        canary(cfg, deployment_id, backend=be, golden=golden)
        backend = be
    complete(cfg, deployment_id, backend=backend)
    return result(cfg, deployment_id)
