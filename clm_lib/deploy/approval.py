"""Human approval of a promotion that passed the gate, before anything is deployed (``deploy.require_approval``).

Airflow's human-in-the-loop operator asks and waits (:mod:`clm_lib.airflow.operators.approval`); everything else
is here, without Airflow: what the request says (:func:`build_request`: per-task scores against the champion with
each task's margin to the gate's limit, the drift that triggered the training, the data versions it read, a link
to the version's registry page), who may decide it (:func:`decide`: the four-eyes rule), and what the decision
does (:func:`record_waiting`, :func:`record_decision`). An approval is a ``deploy.approval`` event and a
``promotion.approved`` audit entry; a rejection, a timeout or a refused self-approval ends the deployment
``rejected`` before it reached any slot, tags the version in MLflow with who and why, and is audited as
``promotion.rejected``. :func:`pending_approvals` lists the promotions still waiting, for the screens.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from clm_lib import audit
from clm_lib.config import ClmConfig
from clm_lib.db import session_scope
from clm_lib.db.models import AuditEntry, Deployment, DeploymentEvent, DriftReport, Evaluation, TrainingRun
from clm_lib.deploy import history
from clm_lib.evaluation.stored_metrics import gate_inputs

log = logging.getLogger(__name__)

APPROVE, REJECT = "Approve", "Reject"
"""The two answers, as Airflow's ``ApprovalOperator`` names them."""
STEP = "approval"
"""The deployment event of every approval step."""
REJECTED = "rejected"
"""Status of a promotion a person (or the approval timeout) refused."""
APPROVED_ACTION, REJECTED_ACTION = "promotion.approved", "promotion.rejected"
WAITING = "waiting"
"""``metrics["approval"]`` of the event that opens the wait (how :func:`pending_approvals` finds them)."""
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~>])")


def md(text: Any, limit: int = 300) -> str:
    """``text`` as inert Markdown: one line, HTML characters as entities, Markdown punctuation escaped, cut to
    ``limit`` characters. For every value in the request that a person or a data file could have written."""
    flat = " ".join(str(text).split())
    if len(flat) > limit:
        flat = flat[: limit - 1] + "…"
    flat = flat.replace("&", "&amp;").replace("<", "&lt;").replace('"', "&quot;")
    return _MD_SPECIAL.sub(r"\\\1", flat)


def actor_name(actor: str | None) -> str | None:
    """The person behind an audit actor (``airflow:alice`` -> ``alice``), for the four-eyes comparison."""
    if not actor:
        return None
    return actor.split(":", 1)[1] if actor.startswith("airflow:") else actor


@dataclass(frozen=True)
class TaskScore:
    task: str
    candidate: float | None
    champion: float | None
    margin: float | None
    """Points above the gate's limit: ``delta + max_task_drop`` for a task the champion knew, the score above
    ``min_new_task_accuracy`` for a new one; negative: the gate refused it."""

    @property
    def delta(self) -> float | None:
        if self.candidate is None or self.champion is None:
            return None
        return self.candidate - self.champion


@dataclass(frozen=True)
class ApprovalRequest:
    """What the approver is shown (Airflow's subject and Markdown body) and the facts it was made from."""

    deployment_id: int
    version: str
    champion: str | None
    subject: str
    body: str
    scores: list[TaskScore] = field(default_factory=list)
    drift: list[str] = field(default_factory=list)
    data_versions: dict[str, Any] = field(default_factory=dict)
    link: str = ""


def _evaluation(session: Session, version: str | None) -> Evaluation | None:
    if version is None:
        return None
    return session.scalars(
        select(Evaluation).where(Evaluation.model_version == version).order_by(Evaluation.id.desc())
    ).first()


def task_scores(cfg: ClmConfig, candidate: dict[str, float], champion: dict[str, float]) -> list[TaskScore]:
    """Each task of either version with its margin to the gate's limit (see :class:`TaskScore`)."""
    out = []
    for task in sorted(set(candidate) | set(champion)):
        after, before = candidate.get(task), champion.get(task)
        if after is None:
            margin = None
        elif before is None:
            margin = after - cfg.gate.min_new_task_accuracy
        else:
            margin = after - before + cfg.gate.max_task_drop
        out.append(TaskScore(task, after, before, margin))
    return out


def _training_run(session: Session, version: str) -> TrainingRun | None:
    return session.scalars(select(TrainingRun).where(TrainingRun.model_version == version)).first()


def drift_reasons(session: Session, run: TrainingRun | None) -> list[str]:
    """The drift detectors that requested the training of ``run``, in their own words (or what else started it)."""
    if run is None:
        return []
    checks = list((run.trigger or {}).get("drift_checks") or [])
    if checks:
        rows = session.scalars(
            select(DriftReport).where(DriftReport.check_id.in_(checks), DriftReport.triggered.is_(True))
        ).all()
        if rows:
            return [f"{r.detector}: {r.explanation}" for r in rows]
    trigger = run.trigger or {}
    why = trigger.get("reason") or trigger.get("plan") or trigger.get("kind") or "unknown"
    return [f"no drift check: {why}"]


def requester_of(session: Session, version: str) -> str | None:
    """Who asked for the training that produced ``version``: the actor of its ``training.requested`` audit entry
    (None when a schedule or a drift check started it, or it is not known)."""
    run = _training_run(session, version)
    if run is None or not run.airflow_run_id:
        return None
    entries = session.scalars(
        select(AuditEntry).where(AuditEntry.action == "training.requested", AuditEntry.to_value == run.airflow_run_id)
    ).all()
    return next((e.actor for e in entries if (e.details or {}).get("dag_run_id") == run.airflow_run_id), None)


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


def _row(s: TaskScore) -> str:
    delta = "—" if s.delta is None else f"{s.delta:+.1f}"
    return f"| {md(s.task, 80)} | {_fmt(s.champion)} | {_fmt(s.candidate)} | {delta} | {_fmt(s.margin)} |"


def build_request(cfg: ClmConfig, session: Session, deployment_id: int) -> ApprovalRequest:
    """The request for the promotion ``deployment_id`` (gated, not yet deployed)."""
    dep = history.load(session, deployment_id)
    version, champion = dep.version, dep.from_version
    candidate_ev, candidate, before = _evaluation(session, version), {}, None
    if candidate_ev is not None:  # on the metrics the gate compared
        candidate, before, _, _ = gate_inputs(candidate_ev, _evaluation(session, champion))
    scores = task_scores(cfg, candidate, before or {})
    run = _training_run(session, version)
    drift = drift_reasons(session, run)
    data = {}
    if run is not None:
        data = {"training_run": run.id, "curated_version": run.curated_version,
                "previous_curated_version": run.previous_curated_version, "replay_version": run.replay_version,
                "new_rows": run.new_rows, "replay_rows": run.replay_rows}  # fmt: skip
    link = f"/pluginsv2/clm/models/{version}"
    name = cfg.registry.model_name
    subject = f"Promote {name} version {version} over champion {champion or '(none)'}?"
    lines = [
        f"**Promotion #{dep.id}**: {md(name)} version **{md(version)}** replaces champion "
        f"**{md(champion or '(none)')}** once approved; nothing is deployed before that.",
        "",
        f"Asked by {md(dep.actor)}" + (f": {md(dep.reason)}" if dep.reason else "") + ".",
        "",
        f"Gate passed (a task may drop at most {cfg.gate.max_task_drop:g} points; a new task needs "
        f"{cfg.gate.min_new_task_accuracy:g}). The margin is how far each task is from that limit.",
        "",
        "| task | champion | candidate | delta | margin |",
        "|---|---:|---:|---:|---:|",
        *(_row(s) for s in scores),
        "",
        "**Why it was trained**",
        "",
        *(f"- {md(d)}" for d in drift or ["not known"]),
        "",
        "**Data it was trained on**",
        "",
        *(f"- {k.replace('_', ' ')}: {md(v)}" for k, v in data.items()),
        *([] if data else ["- not known (no training run in clm's database)"]),
        "",
        f"[Version {md(version)} in the model registry]({link})",
    ]
    return ApprovalRequest(dep.id, version, champion, subject, "\n".join(lines), scores, drift, data, link)


@dataclass(frozen=True)
class Decision:
    """What a response means for the promotion."""

    approved: bool
    kind: str
    """``approved``, ``rejected``, ``timeout``, ``self_approval`` (four eyes), or ``not_an_approver``."""
    approver: str | None
    """Who answered (Airflow's user name); None for a timeout."""
    reason: str


def decide(
    chosen: list[str],
    responder: dict[str, str] | None,
    *,
    timed_out: bool,
    requester: str | None,
    four_eyes: bool,
    approvers: list[str] | None = None,
    comment: str = "",
) -> Decision:
    """Judge a response: only an ``Approve`` by an allowed person, who under ``four_eyes`` is not ``requester``
    (None: nobody asked, a drift check did), approves; anything else, no answer in time included, rejects. Fails
    safe: a response without a responder counts as no answer."""
    name = (responder or {}).get("name") or None
    uid = (responder or {}).get("id") or None
    said = f": {comment}" if comment.strip() else ""
    if timed_out or name is None:
        return Decision(False, "timeout", None, "nobody answered before the approval timeout")
    if approvers and uid not in approvers:
        return Decision(False, "not_an_approver", name, f"{name} is not one of deploy.approvers")
    if chosen != [APPROVE]:
        return Decision(False, "rejected", name, f"rejected by {name}{said}")
    if four_eyes and requester is not None and actor_name(requester) == name:
        return Decision(False, "self_approval", name,
                        f"four-eyes rule: {name} asked for this promotion and may not approve it")  # fmt: skip
    return Decision(True, "approved", name, f"approved by {name}{said}")


@dataclass(frozen=True)
class PendingApproval:
    """A promotion waiting for a person's approval, for the screens ("waiting for approval")."""

    deployment_id: int
    version: str
    champion: str | None
    """The champion it would replace."""
    since: datetime
    requested_by: str
    requester: str | None
    """Who may not approve it under ``deploy.four_eyes`` (None: nobody, or not known)."""
    timeout_at: str | None
    """When it ends ``rejected`` without an answer (ISO 8601, UTC)."""
    approvers: list[str]
    """``deploy.approvers`` when it was asked (empty: anyone Airflow lets answer)."""
    airflow_url: str | None
    """Airflow's Required-actions page of this request, relative to Airflow's base URL."""


def record_waiting(
    cfg: ClmConfig,
    deployment_id: int,
    *,
    requester: str | None,
    timeout_at: datetime,
    approvers: list[str],
    airflow_url: str | None,
    four_eyes: bool = False,
) -> None:
    """Record that the promotion now waits for approval (its deployment stays ``pending``) and how it was asked:
    the decision is judged by these (a config changed meanwhile can make it stricter, never looser)."""
    who = ", ".join(approvers) if approvers else "anyone Airflow lets respond"
    info = {"approval": WAITING, "requester": requester, "timeout_at": timeout_at.isoformat(),
            "approvers": list(approvers), "airflow_url": airflow_url, "four_eyes": four_eyes}  # fmt: skip
    history.step(cfg, deployment_id, STEP, "info",
                 f"waiting for approval by {who} until {timeout_at:%Y-%m-%d %H:%M:%S} UTC", metrics=info)  # fmt: skip


def asked(session: Session, deployment_id: int) -> dict[str, Any]:
    """How the newest approval request of the promotion was asked (see :func:`record_waiting`); {} if never."""
    opened = [e for e in history.events_of(session, deployment_id)
              if e.step == STEP and (e.metrics or {}).get("approval") == WAITING]  # fmt: skip
    return dict(opened[-1].metrics) if opened else {}


def record_decision(cfg: ClmConfig, deployment_id: int, decision: Decision) -> str:
    """Apply ``decision`` to the promotion; returns its status afterwards (``pending`` when approved). A promotion
    that ended while it waited (superseded, or ended by a rollback) stays as it is; the decision is still audited."""
    from clm_lib.deploy.rollout import locked

    actor = f"airflow:{decision.approver}" if decision.approver else "clm:approval-timeout"
    action = APPROVED_ACTION if decision.approved else REJECTED_ACTION
    with locked(cfg, f"approval of deployment #{deployment_id}"), session_scope(cfg.database_url) as s:
        dep = history.load(s, deployment_id)
        status, version, target = dep.status, dep.version, f"{dep.model_name}/{dep.version}"
        details = {"deployment_id": dep.id, "decision": decision.kind, "status_before": status}
        audit.record(s, action=action, target=target, actor=actor, from_value=dep.from_version, to_value=version,
                     reason=decision.reason, details=details)  # fmt: skip
        if status != "pending":
            history.event(s, dep, STEP, "info", f"{decision.reason}; the promotion had already ended {status}",
                          actor=actor)  # fmt: skip
            return status
        if decision.approved:
            history.event(s, dep, STEP, "ok", decision.reason, actor=actor, metrics={"approval": decision.kind})
        else:
            history.event(s, dep, STEP, "failed", decision.reason, actor=actor, metrics={"approval": decision.kind})
            history.finish(s, dep, REJECTED, f"{decision.reason}; champion {dep.from_version or '(none)'} unchanged")
            status = REJECTED
    _tag(cfg, version, decision)
    return status if not decision.approved else "pending"


def ensure_approved(cfg: ClmConfig, deployment_id: int) -> None:
    """Raise :class:`~clm_lib.errors.DeployError` unless a person approved this promotion, ending it ``rejected``.

    The deploy step asks again because Airflow lets an admin mark the approval task successful by hand: that must
    not put a model on traffic (DESIGN.md: the only way onto traffic is gate, approval, then the rollout)."""
    from clm_lib.errors import DeployError

    with session_scope(cfg.database_url) as s:
        if any(e.step == STEP and e.status == "ok" for e in history.events_of(s, deployment_id)):
            return
        dep = history.load(s, deployment_id)
        reason = "approval is required and no approval is recorded for this promotion (was the approval task " \
                 "marked successful by hand?)"  # fmt: skip
        if dep.status == "pending":
            history.event(s, dep, STEP, "failed", reason, actor="clm:deploy")
            history.finish(s, dep, REJECTED, f"{reason}; champion {dep.from_version or '(none)'} unchanged")
            audit.record(s, action=REJECTED_ACTION, target=f"{dep.model_name}/{dep.version}", actor="clm:deploy",
                         from_value=dep.from_version, to_value=dep.version, reason=reason,
                         details={"deployment_id": dep.id, "decision": "not_approved"})  # fmt: skip
    raise DeployError(f"promotion #{deployment_id}: {reason}")


def _tag(cfg: ClmConfig, version: str, decision: Decision) -> None:
    from clm_lib.registry.mlflow_registry import client

    tags = {
        "clm.approval": "approved" if decision.approved else REJECTED,
        "clm.approval.by": decision.approver or "(timeout)",
        "clm.approval.reason": decision.reason[:5000],
    }
    try:
        for key, value in tags.items():
            client(cfg).set_model_version_tag(cfg.registry.model_name, version, key, value)
    except Exception as exc:  # clm's database holds the decision; the tags only mirror it for MLflow's UI
        log.warning("version %s: approval tags not written to MLflow: %s", version, exc)


def pending_approvals(session: Session, model_name: str | None = None) -> list[PendingApproval]:
    """Promotions waiting for approval now, oldest first."""
    stmt = (
        select(Deployment, DeploymentEvent)
        .join(DeploymentEvent, DeploymentEvent.deployment_id == Deployment.id)
        .where(Deployment.kind == "promotion", Deployment.status == "pending", DeploymentEvent.step == STEP)
        .order_by(Deployment.id, DeploymentEvent.id)
    )
    if model_name is not None:
        stmt = stmt.where(Deployment.model_name == model_name)
    waiting: dict[int, tuple[Deployment, DeploymentEvent]] = {}
    for dep, ev in session.execute(stmt).all():
        if (ev.metrics or {}).get("approval") == WAITING:
            waiting[dep.id] = (dep, ev)
        else:  # answered: an approved promotion stays pending until its deploy step starts
            waiting.pop(dep.id, None)
    out = []
    for dep, ev in waiting.values():
        m = ev.metrics or {}
        out.append(PendingApproval(dep.id, dep.version, dep.from_version, ev.at, dep.actor, m.get("requester"),
                                   m.get("timeout_at"), list(m.get("approvers") or []),
                                   m.get("airflow_url")))  # fmt: skip
    return out
