"""Deployments as the serving screen shows them: each promotion or rollback, its steps, and every bake verdict.

Read from the rows :mod:`clm_lib.deploy.history` writes. Event metrics are JSON written by older and newer
clm versions alike, so they are read defensively: a field that is missing or of the wrong type is left out,
never an error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from clm_lib.db.models import Deployment, DeploymentEvent
from clm_lib.deploy.history import version_marks
from clm_lib.deploy.plan import ACTIVE
from clm_lib.reporting.stores import utc

STEP_LABELS = {
    "gate": "Gate",
    "baseline": "Baseline",
    "deploy": "Deploy",
    "smoke_test": "Smoke test",
    "golden_set": "Golden set",
    "traffic": "Traffic",
    "bake": "Bake",
    "rollback": "Rollback",
    "promote": "Promote",
    "switch": "Switch",
    "aliases": "Aliases",
}
RULE_LABELS = {
    "health": "health",
    "metrics": "metrics",
    "error_rate": "error rate",
    "p95_latency": "p95 latency",
    "feedback": "feedback",
    "golden_set": "golden set",
}


@dataclass(frozen=True)
class Verdict:
    """One safety rule's verdict at the end of (or during) a bake window."""

    rule: str
    label: str
    state: Literal["ok", "breach", "not judged"]
    message: str


@dataclass(frozen=True)
class Step:
    at: datetime | None
    step: str
    label: str
    status: str
    """ok | failed | breach | info."""
    message: str
    weights: dict[str, int] | None
    percent: int | None
    """The candidate's share of traffic the verdicts were taken at (bake and breach steps)."""
    verdicts: list[Verdict]


@dataclass(frozen=True)
class DeploymentView:
    id: int
    kind: str
    """promotion | rollback."""
    version: str
    from_version: str | None
    strategy: str
    status: str
    slot: str | None
    stable_slot: str | None
    actor: str
    reason: str
    outcome: str
    started_at: datetime | None
    finished_at: datetime | None
    switch_ms: float | None
    """Rollbacks: from the call (the deploy lock's wait included) to all traffic on the target."""
    warm: bool | None
    """Rollbacks: the target was still loaded, so the switch was a weight flip."""
    steps: list[Step]
    """Filled for the deployments the page details (the current one, a rollback just made); else empty."""
    marks: dict[str, str] = field(default_factory=dict)
    """``version`` and ``from_version`` when rolled back or rejected (and not champion since): why, in words."""

    @property
    def active(self) -> bool:
        return self.status in ACTIVE


def read(
    session: Session, *, limit: int, focus: int | None = None
) -> tuple[list[DeploymentView], DeploymentView | None]:
    """The ``limit`` newest deployments (the newest and any still active with their steps), and ``focus``."""
    rows = list(session.scalars(select(Deployment).order_by(Deployment.id.desc()).limit(limit)))
    wanted = {r.id for r in rows[:1] if r} | {r.id for r in rows if r.status in ACTIVE}
    focused = session.get(Deployment, focus) if focus is not None else None
    if focused is not None:
        wanted.add(focused.id)
    events = _events(session, {r.id for r in rows} | wanted)
    marked = {v: m.text for v, m in version_marks(session).items()}
    views = [_view(r, events.get(r.id, []), marked, detailed=r.id in wanted) for r in rows]
    focus_view = _view(focused, events.get(focused.id, []), marked, detailed=True) if focused is not None else None
    return views, focus_view


def of_version(session: Session, version: str) -> list[DeploymentView]:
    """Every deployment that put ``version`` on traffic or took it off, newest first, with its steps."""
    stmt = select(Deployment).where((Deployment.version == version) | (Deployment.from_version == version))
    rows = list(session.scalars(stmt.order_by(Deployment.id.desc())))
    events = _events(session, {r.id for r in rows})
    marked = {v: m.text for v, m in version_marks(session).items()}
    return [_view(r, events.get(r.id, []), marked, detailed=True) for r in rows]


def _events(session: Session, ids: set[int]) -> dict[int, list[DeploymentEvent]]:
    out: dict[int, list[DeploymentEvent]] = {}
    if not ids:
        return out
    stmt = select(DeploymentEvent).where(DeploymentEvent.deployment_id.in_(ids)).order_by(DeploymentEvent.id)
    for ev in session.scalars(stmt):
        out.setdefault(ev.deployment_id, []).append(ev)
    return out


def _view(dep: Deployment, events: list[DeploymentEvent], marked: dict[str, str], *, detailed: bool) -> DeploymentView:
    switch = next((e.metrics for e in events if e.step == "switch" and isinstance(e.metrics, dict)), {})
    switch_ms = switch.get("switch_ms")
    return DeploymentView(
        id=dep.id,
        kind=dep.kind,
        version=dep.version,
        from_version=dep.from_version,
        strategy=dep.strategy,
        status=dep.status,
        slot=dep.slot,
        stable_slot=dep.stable_slot,
        actor=dep.actor,
        reason=dep.reason or "",
        outcome=dep.outcome or "",
        started_at=utc(dep.started_at),
        finished_at=utc(dep.finished_at),
        switch_ms=float(switch_ms) if isinstance(switch_ms, int | float) else None,
        warm=switch.get("warm") if isinstance(switch.get("warm"), bool) else None,
        steps=[_step(e) for e in events] if detailed else [],
        marks={v: marked[v] for v in (dep.version, dep.from_version) if v in marked},
    )


def _step(ev: DeploymentEvent) -> Step:
    metrics = ev.metrics if isinstance(ev.metrics, dict) else {}
    checks = metrics.get("checks") if isinstance(metrics.get("checks"), list) else []
    percent = metrics.get("percent")
    return Step(
        at=utc(ev.at),
        step=ev.step,
        label=STEP_LABELS.get(ev.step, ev.step.replace("_", " ").capitalize()),
        status=ev.status,
        message=ev.message or "",
        weights=_weights(ev.weights),
        percent=percent if isinstance(percent, int) and not isinstance(percent, bool) else None,
        verdicts=_verdicts(checks),
    )


def _weights(raw: Any) -> dict[str, int] | None:
    if not isinstance(raw, dict):
        return None
    out = {str(k): v for k, v in raw.items() if isinstance(v, int) and not isinstance(v, bool)}
    return out or None


def _verdicts(checks: list[Any]) -> list[Verdict]:
    """One verdict per rule: the last check of a rule wins (the health check repeats across polls)."""
    by_rule: dict[str, Verdict] = {}
    for c in checks:
        if not isinstance(c, dict) or not isinstance(c.get("rule"), str):
            continue
        ok = c.get("ok")
        state = "ok" if ok is True else "breach" if ok is False else "not judged"
        rule = c["rule"]
        by_rule[rule] = Verdict(rule, RULE_LABELS.get(rule, rule.replace("_", " ")), state, str(c.get("message", "")))
    return list(by_rule.values())
