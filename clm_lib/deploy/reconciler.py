"""The reconciler: a promotion whose owner stopped reporting back is ended, and the champion gets all traffic again.

A promotion runs as Airflow tasks (or ``clm promote``) that record an event at every step. A task killed with
SIGKILL (the OOM killer, a lost node) records nothing more: its deployment stays ``canary`` with the candidate on
part of the traffic, never judged again, and every later promotion is refused as busy (issue #10). :func:`reconcile`
finds such a deployment and ends it through the one rollback function, so there is no second way to move traffic:

* **Who is dead.** A promotion under way (``pending`` ... ``baked``) whose newest event is older than
  ``deploy.reconciler.stale_after_seconds`` while nobody holds the deploy lock: every step that changes serving
  holds the lock (its lease renewed by a heartbeat while the holder lives), and between steps a live rollout writes
  an event at least once per bake window. The promotion tasks' failure callback knows its owner is gone and passes
  ``owner_gone``: that deployment is settled at once, without waiting for the bound.
* **Where to.** :func:`clm_lib.deploy.rollback.rollback` with no version while that promotion is under way: the
  plan (:func:`clm_lib.deploy.plan.plan_rollback`) ends it, its candidate's weight back to 0 and the champion (from
  clm's deployment history) on all traffic, and MLflow's aliases are set from the history. The promotion ends
  ``abandoned`` (not ``aborted``: nobody judged the candidate bad); the rollback row and every step are audited,
  with the evidence (its last event, how long it has been silent) as the reason. Under the lock the rollback first
  checks that this promotion is still the one under way, so a reconciler that lost a race changes nothing.
* **No champion to return to** (the very first promotion died): it ends ``abandoned`` and its candidate keeps the
  traffic it has, as the rollout's own automatic rollback does in that case.

Rollback intents (a ``rollback`` row still ``pending``) belong to a process that held the deploy lock until it
died; every rollback settles them first, and so does the reconciler, under the lock.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from clm_lib import audit
from clm_lib.config import ClmConfig
from clm_lib.db import session_scope
from clm_lib.db.models import Deployment, DeploymentEvent, utcnow
from clm_lib.deploy import history, lock
from clm_lib.deploy.guard import ALERT
from clm_lib.deploy.plan import ACTIVE, RollbackPlan, current_champion
from clm_lib.errors import DeployBusyError, DeployError

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from clm_lib.serving.backends.base import ServingBackend

log = logging.getLogger(__name__)

ACTOR = "clm:reconciler"
"""Who the reconciler's changes are recorded for when the caller names nobody."""
ABANDONED = "abandoned"
"""The status of a promotion the reconciler ended: its owner stopped, its candidate was not judged bad."""


@dataclass(frozen=True)
class Orphan:
    """A promotion under way whose owner stopped reporting back."""

    deployment_id: int
    version: str
    status: str
    last_seen: datetime
    """Its newest event (its start, without one)."""
    last_step: str | None
    silent_seconds: float

    def evidence(self, owner_gone: bool) -> str:
        last = f"its last event, {self.last_step}, " if self.last_step else "it started "
        when = f"{last}{self.silent_seconds:.0f} s ago ({self.last_seen:%Y-%m-%d %H:%M:%S} UTC)"
        why = "its task failed" if owner_gone else "no event since, and nobody holds the deploy lock"
        who = f"promotion #{self.deployment_id} of version {self.version} ({self.status})"
        return f"{who} lost its owner: {why}; {when}"


@dataclass(frozen=True)
class Settled:
    """What the reconciler did about one deployment."""

    deployment_id: int
    version: str
    status_before: str
    outcome: str
    """``abandoned`` (ended; traffic on the champion, or nothing to return to), ``settled`` (a dead rollback intent),
    ``skipped`` (the state changed under us: nothing done), ``busy`` (the deploy lock was taken: next time), or
    ``error`` (serving or MLflow failed: next time)."""
    message: str
    rollback_id: int | None = None


@dataclass
class ReconcileResult:
    checked_at: datetime
    busy: str | None = None
    """Who held the deploy lock, when nothing was judged because of it."""
    settled: list[Settled] = field(default_factory=list)
    aliases: list[str] = field(default_factory=list)
    """Alias moves made because MLflow disagreed with clm's deployment history (see :func:`align_aliases`)."""

    @property
    def ok(self) -> bool:
        """False when a dead deployment could not be settled for another reason than a lock taken meanwhile."""
        return all(s.outcome != "error" for s in self.settled)

    def summary(self) -> str:
        if self.busy:
            return f"nothing judged: the deploy lock is held by {self.busy}"
        parts = [f"#{s.deployment_id} {s.outcome}: {s.message}" for s in self.settled]
        if self.aliases:
            parts.append("aliases set from the history: " + ", ".join(self.aliases))
        return "; ".join(parts) or "every deployment under way has a live owner"

    def as_dict(self) -> dict[str, Any]:
        return {"checked_at": self.checked_at.isoformat(), "busy": self.busy, "ok": self.ok,
                "settled": [asdict(s) for s in self.settled], "aliases": self.aliases}  # fmt: skip


def _utc(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at  # SQLite hands back naive UTC


def find_orphans(
    session: Session,
    *,
    now: datetime,
    stale_after: float,
    model_name: str | None = None,
    deployment_id: int | None = None,
) -> list[Orphan]:
    """Promotions under way silent for longer than ``stale_after`` seconds (all of them with ``stale_after=0``),
    oldest first; only ``deployment_id`` when given. The deploy lock is the caller's to check."""
    last = (
        select(DeploymentEvent.deployment_id, func.max(DeploymentEvent.id).label("event_id"))
        .group_by(DeploymentEvent.deployment_id)
        .subquery()
    )
    stmt = (
        select(Deployment, DeploymentEvent)
        .outerjoin(last, last.c.deployment_id == Deployment.id)
        .outerjoin(DeploymentEvent, DeploymentEvent.id == last.c.event_id)
        .where(Deployment.kind == "promotion", Deployment.status.in_(ACTIVE))
        .order_by(Deployment.id)
    )
    if model_name is not None:
        stmt = stmt.where(Deployment.model_name == model_name)
    if deployment_id is not None:
        stmt = stmt.where(Deployment.id == deployment_id)
    out = []
    for dep, ev in session.execute(stmt).all():
        seen = _utc(ev.at if ev is not None else dep.started_at)
        silent = (now - seen).total_seconds()
        if silent >= stale_after:
            out.append(Orphan(dep.id, dep.version, dep.status, seen, ev.step if ev else None, max(silent, 0.0)))
    return out


def reconcile(
    cfg: ClmConfig,
    *,
    backend: ServingBackend | None = None,
    actor: str | None = None,
    deployment_id: int | None = None,
    owner_gone: bool = False,
    now: datetime | None = None,
) -> ReconcileResult:
    """End every promotion whose owner stopped reporting back (only ``deployment_id``, when given) and settle dead
    rollback intents; see the module's docstring. ``owner_gone``: the caller knows the owner of ``deployment_id``
    died (its task failed), so neither the silence bound nor a lock lease left by it has to run out first (the
    rollback still waits ``deploy.lock_wait_seconds`` for the lock). Never raises for one deployment it could not
    settle: the result says why, and the next run tries again."""
    from clm_lib.deploy.rollout import serving_backend

    now = now or utcnow()
    actor = actor or ACTOR
    result = ReconcileResult(checked_at=now)
    if owner_gone and deployment_id is None:
        raise ValueError("owner_gone needs the deployment_id whose owner is gone")
    holder = lock.current_holder(cfg.database_url)
    if holder is not None and not owner_gone:
        result.busy = holder  # a live lease: its holder is working (and reports back when it is done)
        return result
    bound = 0.0 if owner_gone else cfg.deploy.reconciler.stale_after_seconds
    with session_scope(cfg.database_url) as s:
        orphans = find_orphans(s, now=now, stale_after=bound, model_name=cfg.registry.model_name,
                               deployment_id=deployment_id)  # fmt: skip
        intents = s.scalar(select(func.count()).where(Deployment.kind == "rollback", Deployment.status == "pending"))
    if not orphans and not intents:
        result.aliases = align_aliases(cfg, actor)
        return result
    be = None
    if cfg.deploy.strategy != "alias":
        be = serving_backend(cfg, backend)
    if intents and holder is None:
        result.settled += _settle_intents(cfg, be, actor)
    for orphan in orphans:
        settled = _settle(cfg, orphan, be, actor, owner_gone)
        log.warning("reconciler: #%s %s: %s", settled.deployment_id, settled.outcome, settled.message)
        if settled.outcome == ABANDONED:
            _alert(cfg, settled, actor)
        result.settled.append(settled)
    result.aliases = align_aliases(cfg, actor)
    return result


def align_aliases(cfg: ClmConfig, actor: str) -> list[str]:
    """Set MLflow's ``champion``/``previous`` from clm's deployment history when they disagree.

    A promotion or rollback killed between committing its history and writing its aliases is finished as far as
    the history goes, so no orphan rule picks it up and no retry comes (``clm_promotion`` does not retry): without
    this, the aliases would stay wrong until someone ran ``clm rollback --reconcile``. Under the deploy lock (not
    waiting for it: a holder writes the aliases itself when it is done), fenced like any alias write."""
    from clm_lib.deploy.reconcile import reconcile_aliases
    from clm_lib.deploy.rollout import alias_fence, locked

    try:
        with locked(cfg, "reconciler", wait_seconds=0) as lease:
            moves = reconcile_aliases(
                cfg,
                actor=actor,
                reason="reconciler: MLflow's aliases disagreed with clm's deployment history",
                before_write=alias_fence(lease),
            )
    except DeployBusyError:
        return []
    except Exception as exc:  # MLflow down: the next run tries again; the guard and screens show the disagreement
        log.warning("reconciler: aliases not aligned with the history: %s", exc)
        return []
    return [str(m) for m in moves]


def _alert(cfg: ClmConfig, settled: Settled, actor: str) -> None:
    """A killed promotion is worth a person's look (why was its task killed?): an ``alert`` audit entry, once, when
    the reconciler ended it (the same shape as the guard's, :data:`clm_lib.deploy.guard.ALERT`)."""
    with session_scope(cfg.database_url) as s:
        audit.record(
            s,
            action=ALERT,
            target=f"{cfg.registry.model_name}/{settled.version}",
            actor=actor,
            from_value=settled.version,
            reason=settled.message,
            details={
                "source": "deploy.reconciler",
                "kind": "deployment_abandoned",
                "severity": "warning",
                "deployment_id": settled.deployment_id,
                "status_before": settled.status_before,
                "rollback_id": settled.rollback_id,
                "action": "rollback" if settled.rollback_id else "none",
            },
        )


def _settle(cfg: ClmConfig, orphan: Orphan, be: ServingBackend | None, actor: str, owner_gone: bool) -> Settled:
    reason = orphan.evidence(owner_gone)
    done = {"deployment_id": orphan.deployment_id, "version": orphan.version, "status_before": orphan.status}
    try:
        if orphan.status in ("pending", "deploying"):
            return _abandon(cfg, orphan, actor, f"{reason}; its candidate never had traffic")
        champion = _champion(cfg)
        if champion is None:
            return _abandon(cfg, orphan, actor, f"{reason}; no earlier version to return to, so {orphan.version} "
                                                "keeps the traffic it has without being champion")  # fmt: skip
        return _roll_back(cfg, orphan, be, actor, reason)
    except DeployBusyError as exc:
        return Settled(**done, outcome="busy", message=str(exc))
    except DeployError as exc:
        with session_scope(cfg.database_url) as s:
            status = history.load(s, orphan.deployment_id).status
        if status not in ACTIVE:  # someone else ended it while we looked: the rollback's check refused, unchanged
            return Settled(**done, outcome="skipped", message=f"now {status}: {exc}")
        return Settled(**done, outcome="error", message=str(exc))
    except Exception as exc:  # serving or MLflow failed (each fails as several types): the next run tries again
        log.warning("reconciler: promotion #%s not settled", orphan.deployment_id, exc_info=True)
        return Settled(**done, outcome="error", message=f"{type(exc).__name__}: {exc}")


def _champion(cfg: ClmConfig) -> str | None:
    """The champion by clm's history, else MLflow's (set before clm's first deployment), as the rollback reads it."""
    from clm_lib.registry.aliases import CHAMPION
    from clm_lib.registry.mlflow_registry import alias_version

    with session_scope(cfg.database_url) as s:
        champion = current_champion(history.records(s, cfg.registry.model_name))
    return champion or alias_version(cfg, CHAMPION)


def _roll_back(cfg: ClmConfig, orphan: Orphan, be: ServingBackend | None, actor: str, reason: str) -> Settled:
    """The one rollback function ends the promotion: its candidate back to 0 %, the champion on all traffic."""
    from clm_lib.deploy.rollback import rollback

    def still_the_one(plan: RollbackPlan, _champion: str | None) -> str | None:
        if plan.ends == orphan.deployment_id:
            return None
        return f"promotion #{orphan.deployment_id} is no longer the one under way; the reconciler changed nothing"

    r = rollback(cfg, None, actor=actor, reason=reason, backend=be, only_if=still_the_one, end_as=ABANDONED)
    where = f"all traffic on {r.slot}" if r.slot else "no serving"
    return Settled(orphan.deployment_id, orphan.version, orphan.status, ABANDONED,
                   f"{reason}. Ended by rollback #{r.deployment_id}: champion {r.to_version}, {where}",
                   rollback_id=r.deployment_id)  # fmt: skip


def _abandon(cfg: ClmConfig, orphan: Orphan, actor: str, outcome: str) -> Settled:
    """End a dead promotion without moving traffic (none to move, or nowhere to move it), under the lock."""
    from clm_lib.deploy.rollout import locked

    done = {"deployment_id": orphan.deployment_id, "version": orphan.version, "status_before": orphan.status}
    with locked(cfg, f"reconciler ending promotion #{orphan.deployment_id}"), session_scope(cfg.database_url) as s:
        dep = history.load(s, orphan.deployment_id)
        if dep.status != orphan.status:
            return Settled(**done, outcome="skipped", message=f"now {dep.status}; nothing done")
        history.event(s, dep, "reconcile", "failed", outcome, actor=actor)
        history.finish(s, dep, ABANDONED, outcome)
    return Settled(**done, outcome=ABANDONED, message=outcome)


def _settle_intents(cfg: ClmConfig, be: ServingBackend | None, actor: str) -> list[Settled]:
    """Rollback rows still ``pending``: their process held the deploy lock until it died (we hold it now), so
    each is settled as the next rollback would settle it, and MLflow's aliases set from the history."""
    from clm_lib.deploy.reconcile import sync_aliases
    from clm_lib.deploy.rollback import _settle_interrupted  # the one place that settles a dead rollback
    from clm_lib.deploy.rollout import alias_fence, locked

    stale = select(Deployment.id, Deployment.version).where(
        Deployment.kind == "rollback", Deployment.status == "pending"
    )
    try:
        with locked(cfg, "reconciler settling dead rollbacks", wait_seconds=0) as lease:
            with session_scope(cfg.database_url) as s:
                pending = s.execute(stale).all()
            _settle_interrupted(cfg, be)
            why = "set from clm's deployment history after a dead rollback"
            _, error = sync_aliases(cfg, actor=actor, reason=why, before_write=alias_fence(lease))
            with session_scope(cfg.database_url) as s:
                ended = {i: history.load(s, i) for i, _ in pending}
                ended = {i: f"rollback #{i} {d.status}: {d.outcome}" for i, d in ended.items()}
    except DeployBusyError:  # someone took the lock since we looked: a live rollback settles them itself
        return []
    except DeployError as exc:  # the lock lost mid-way (a pause past the lease): the next run tries again
        return [Settled(0, "", "pending", "error", f"dead rollbacks not settled: {exc}")]
    tail = f" (MLflow's aliases not set: {error})" if error is not None else ""
    return [Settled(i, v, "pending", "settled", ended[i] + tail) for i, v in pending]
