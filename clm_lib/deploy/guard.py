"""The post-promotion guard: the bake window's live rules, applied to the champion after it was promoted.

The canary's automatic rollback watches a candidate only during its bake windows (issue #10); a version that goes
bad later (a slow leak, traffic the canary never saw) would serve until someone noticed. :func:`guard`, run by the
``clm_deploy_watch`` DAG every few minutes (or ``clm deploy guard``), judges the slot that serves the champion:

* **When.** Every ``deploy.guard.watch_interval_seconds`` for ``watch_minutes`` after the deployment that made it
  champion, then every ``continuous_interval_seconds`` for as long as it stays champion. Not while a promotion is
  under way (its bake windows judge; its reconciler settles a dead one).
* **On what.** The slot's traffic of the last ``window_seconds``, never from before the version became champion:
  after a rollback the new champion starts with an empty window, so it is not judged on the traffic that condemned
  the old one. The rules are :mod:`clm_lib.deploy.safety`'s (health, error rate, p95 latency, feedback), with the
  bake window's thresholds unless ``deploy.guard.rules`` overrides one; fewer than ``min_requests`` requests is "not
  judged", never a breach. The golden set is not sent: it judged the version before it got all traffic.
* **On a breach.** An event ``guard`` (``breach``, with every rule's value and limit) on the deployment that made
  it champion, an audit entry of action ``alert`` (:data:`ALERT`, below), and an alert (:mod:`clm_lib.alerts`:
  ``guard_breach`` when it does not roll back, ``rollback`` once it has); then the one
  rollback function (:func:`clm_lib.deploy.rollback.rollback`) to the default target of
  :func:`clm_lib.deploy.plan.plan_rollback` (the newest earlier champion not rolled back or rejected since), which
  first checks, under the deploy lock, that the champion is still the one judged and no promotion started since.
* **Not flapping.** The guard undoes promotions only: a champion that a rollback put back (the guard's own, or a
  person's) is judged and alerted on, never rolled back further, so a problem outside the model (the backend, the
  traffic) cannot walk the champion back through its history. An alert is raised once per breach: while the
  champion stays in breach, later judgements do not alert again.

The newest judgement is kept on the deployment that made the version champion (``details["guard"]``: when, the
verdict, each rule's value), which is what the schedule reads; a judgement that changes nothing is not audited.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from clm_lib import audit
from clm_lib.alerts.sources import guard_breach, rolled_back
from clm_lib.config import ClmConfig
from clm_lib.db import session_scope
from clm_lib.db.models import utcnow
from clm_lib.deploy import history, safety
from clm_lib.deploy.plan import ACTIVE, Record, RollbackPlan
from clm_lib.errors import DeployError, ServingError
from clm_lib.serving.backends.base import SLOTS

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from clm_lib.serving.backends.base import ServingBackend, SlotStatus

log = logging.getLogger(__name__)

ACTOR = "clm:guard"
"""Who the guard's changes are recorded for when the caller names nobody."""
ALERT = "alert"
"""Audit action of an alert. Alert delivery reads audit entries with this action past the newest it delivered (the
log is append-only: the cursor is the delivery's); ``details`` holds ``source`` (``deploy.guard``, or
``deploy.reconciler``), ``kind`` (``guard_breach``, ``guard_rollback_failed``; the reconciler's
``deployment_abandoned``), ``severity``, and what was done (``action``); the guard's also the breached rules with
value and limit, every check and the window."""
DUE_SLACK = 0.1
"""A judgement is due once 90 % of its interval passed: runs of the DAG drift by a few seconds."""


@dataclass
class GuardResult:
    verdict: str
    """``ok``, ``breach``, ``not_judged`` (too little traffic, or serving unreadable: ``error`` says), or ``skipped``
    (nothing to judge now: ``message`` says why)."""
    message: str
    champion: str | None = None
    deployment_id: int | None = None
    """The deployment that made ``champion`` champion (where the judgement is kept)."""
    phase: str | None = None
    """``watch`` (within ``watch_minutes`` of it) or ``continuous``."""
    slot: str | None = None
    since: str | None = None
    """Start of the judged window (ISO time)."""
    checks: list[dict[str, Any]] = field(default_factory=list)
    rollback: dict[str, Any] | None = None
    """The rollback the breach caused (:class:`clm_lib.deploy.rollback.RollbackResult` as a dict)."""
    alert_id: int | None = None
    """The audit entry of the alert raised, if one was."""
    error: str | None = None
    """What went wrong when the guard could not do its job (serving unreadable, the rollback refused or failed)."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _utc(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at  # SQLite hands back naive UTC


def tenure(records: list[Record]) -> Record | None:
    """The deployment that made the current champion champion (None: none did)."""
    return max((r for r in records if r.made_champion), key=lambda r: r.id, default=None)


def champion_slot(status: dict[str, SlotStatus], weights: dict[str, int], version: str) -> str | None:
    """The slot with the most traffic that runs ``version``, healthy or not (health is a rule of its own)."""
    have = [s for s in SLOTS if weights.get(s, 0) > 0 and s in status and status[s].version == version]
    return max(have, key=lambda s: weights.get(s, 0), default=None)


def guard(
    cfg: ClmConfig,
    *,
    backend: ServingBackend | None = None,
    actor: str | None = None,
    now: datetime | None = None,
    force: bool = False,
) -> GuardResult:
    """Judge the champion's live traffic if a judgement is due (``force``: now), and roll back on a breach; see the
    module's docstring. Never raises for what it judges: the result says what it saw and did."""
    from clm_lib.deploy.rollout import serving_backend

    g, now, actor = cfg.deploy.guard, now or utcnow(), actor or ACTOR
    if not g.enabled:
        return GuardResult("skipped", "the guard is off (deploy.guard.enabled)")
    if cfg.deploy.strategy == "alias":
        return GuardResult("skipped", "no serving to watch (deploy.strategy: alias)")
    with session_scope(cfg.database_url) as s:
        records = history.records(s, cfg.registry.model_name)
        active = max((r for r in records if r.kind == "promotion" and r.status in ACTIVE), key=lambda r: r.id,
                     default=None)  # fmt: skip
        made = tenure(records)
        last = dict((history.load(s, made.id).details or {}).get("guard") or {}) if made else {}
    if active is not None:
        return GuardResult("skipped", f"promotion #{active.id} of version {active.version} is under way: its bake "
                                      "windows judge it")  # fmt: skip
    if made is None or made.at is None:
        return GuardResult("skipped", "no deployment made a champion yet")
    champion, started = made.version, _utc(made.at)
    base = GuardResult("skipped", "", champion=champion, deployment_id=made.id)
    age = (now - started).total_seconds()
    base.phase = "watch" if age < 60 * g.watch_minutes else "continuous"
    interval = g.watch_interval_seconds if base.phase == "watch" else g.continuous_interval_seconds
    if interval is None:
        base.message = f"version {champion}'s watch period ended {age / 60 - g.watch_minutes:.0f} min ago"
        return base
    checked = _utc(datetime.fromisoformat(last["checked_at"])) if last.get("checked_at") else None
    if not force and checked is not None and (now - checked).total_seconds() < interval * (1 - DUE_SLACK):
        ago = (now - checked).total_seconds()
        base.message = f"not due: judged {ago:.0f} s ago, every {interval:g} s ({base.phase})"
        return base

    window = min(g.window_seconds, cfg.serving.stats_window_s)
    since = max(started, now - timedelta(seconds=window))
    base.since = since.isoformat()
    rules = g.rules.over(cfg.deploy.rules)
    be = None
    try:
        be = serving_backend(cfg, backend)
        status, weights = be.status(), be.weights()
        base.slot = champion_slot(status, weights, champion)
        if base.slot is None:
            why = f"not judged: no slot with traffic runs champion {champion} ({weights})"
            checks = [safety.Check("serving", None, None, None, why)]
        else:
            checks = [safety.health(status.get(base.slot), base.slot)]
            if checks[0].ok:
                checks += safety.live(be.live_metrics(base.slot, since.timestamp()), rules)
    except ServingError as exc:
        # Not a breach: the router that cannot answer would fail the rollback target the same way.
        checks = [safety.Check("metrics", None, None, None, f"not judged: cannot read serving: {exc}")]
        base.error = str(exc)
    base.checks = [c.as_dict() for c in checks]
    breached = safety.breaches(checks)
    judged = any(c.ok is not None for c in checks if c.rule != "health")  # "ok" says something about the traffic
    base.verdict = "breach" if breached else "ok" if judged else "not_judged"
    base.message = "; ".join(dict.fromkeys(c.message for c in (breached or checks)))
    _keep(cfg, made.id, now, base)
    if not breached:
        return base
    return _breach(cfg, be, base, made, breached, actor, was_breach=last.get("verdict") == "breach")


def _keep(cfg: ClmConfig, deployment_id: int, now: datetime, result: GuardResult) -> None:
    """The newest judgement, on the deployment that made the champion: what the schedule and the screens read."""
    with session_scope(cfg.database_url) as s:
        dep = history.load(s, deployment_id)
        kept = {"checked_at": now.isoformat(), "verdict": result.verdict, "phase": result.phase,
                "slot": result.slot, "since": result.since, "checks": result.checks}  # fmt: skip
        dep.details = {**(dep.details or {}), "guard": kept}


def _breach(cfg, be, result: GuardResult, made: Record, breached: list[safety.Check], actor: str, was_breach: bool):
    g, champion = cfg.deploy.guard, result.champion
    if made.kind != "promotion":
        action, why_not = "alert_only", f"{made.kind} #{made.id} put it back: the guard only undoes promotions"
    elif result.phase != "watch" and not g.rollback_after_watch:
        action, why_not = "alert_only", "after the watch period (deploy.guard.rollback_after_watch: false)"
    else:
        action, why_not = "rollback", None
    said = f"champion {champion} on {result.slot}: {result.message}"
    with session_scope(cfg.database_url) as s:
        dep = history.load(s, made.id)
        then = "rolling back" if action == "rollback" else f"not rolled back ({why_not})"
        history.event(
            s,
            dep,
            "guard",
            "breach",
            f"{said} ({result.phase} window since {result.since}); {then}",
            metrics={"checks": result.checks, "phase": result.phase, "since": result.since},
            actor=actor,
        )
        if not was_breach:  # once per breach: the same breach judged again raises no second alert
            result.alert_id = _alert(s, cfg, result, breached, actor, "guard_breach", said, action=action).id
    if action != "rollback":
        log.warning("guard: %s; %s", said, why_not)
        return result
    from clm_lib.deploy.rollback import rollback

    def unchanged(plan: RollbackPlan, now_champion: str | None) -> str | None:
        if plan.ends is None and now_champion == champion:
            return None
        return f"the guard judged champion {champion}, but it is {now_champion} now or a promotion started since"

    try:
        r = rollback(cfg, None, actor=actor, reason=f"guard: {said}", backend=be, only_if=unchanged)
    except (DeployError, ServingError) as exc:
        result.error = f"the guard could not roll back: {exc}"
        with session_scope(cfg.database_url) as s:
            history.event(s, history.load(s, made.id), "guard", "failed", result.error, actor=actor)
            _alert(s, cfg, result, breached, actor, "guard_rollback_failed", f"{said}; {result.error}", action="none")
        log.error("guard: %s; %s", said, result.error)
        return result
    result.rollback = r.as_dict()
    rolled_back(cfg, version=str(champion), deployment_id=r.deployment_id, how="guard", why=said)
    history.step(cfg, made.id, "guard", "info", f"rolled back by rollback #{r.deployment_id}: champion "
                 f"{r.from_version} -> {r.to_version} on {r.slot}, {r.switch_ms:.0f} ms", actor=actor)  # fmt: skip
    log.warning("guard: %s; rolled back to %s (rollback #%s)", said, r.to_version, r.deployment_id)
    return result


def _alert(
    s: Session, cfg: ClmConfig, result: GuardResult, breached: list[safety.Check], actor: str, kind: str,
    message: str, *, action: str,
):  # fmt: skip
    if action != "rollback":  # a rollback's alert is raised once it is done (``rollback`` kind)
        guard_breach(cfg, version=result.champion, message=message, session=s)
    return audit.record(
        s,
        action=ALERT,
        target=f"{cfg.registry.model_name}/{result.champion}",
        actor=actor,
        from_value=result.champion,
        reason=message,
        details={
            "source": "deploy.guard",
            "kind": kind,
            "severity": "critical",
            "deployment_id": result.deployment_id,
            "slot": result.slot,
            "phase": result.phase,
            "window_since": result.since,
            "breached": [c.as_dict() for c in breached],
            "checks": result.checks,
            "action": action,
        },
    )
