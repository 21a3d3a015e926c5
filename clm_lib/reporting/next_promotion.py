"""The next promotion, before it happens: how it will move traffic, what may stop it, and what may be promoted.

Read from the configuration the caller resolved (the screens and the REST API resolve it through
:func:`clm_lib.airflow.settings.resolve_config`, as the ``clm_promotion`` tasks do), so a setting changed there is
the one shown here and used by the next run. :func:`promotable` is the check both the Serving screen's promote
button and ``POST /v1/promote`` make before triggering ``clm_promotion``: the DAG's gate still decides; this only
refuses what cannot start (an unknown version, the champion itself, a deployment under way).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from clm_lib.config import ClmConfig
from clm_lib.db import session_scope
from clm_lib.db.models import Evaluation, GateDecision
from clm_lib.deploy import history
from clm_lib.deploy.config import DeployConfig
from clm_lib.deploy.lock import current_holder
from clm_lib.errors import DeployBusyError
from clm_lib.reporting.overview import GateVerdict, RegistryState, registry_state
from clm_lib.reporting.stores import first_line, missing_sqlite, redact_url

log = logging.getLogger(__name__)

PROMOTION_DAG = "clm_promotion"
"""The DAG a promote button or ``POST /v1/promote`` triggers; its gate task decides."""
MAX_LISTED = 20
"""Newest registered versions offered for promotion; older ones are promoted with ``clm promote --version``."""


class UnknownVersion(LookupError):
    """The version is not registered in MLflow (a 404 naming it)."""


class NotPromotable(DeployBusyError):
    """The version cannot be promoted now: it is the champion, or another deployment is under way (a 409)."""


@dataclass(frozen=True)
class RuleLine:
    """One safety rule of the bake windows, with its threshold in words."""

    rule: str
    """health | error_rate | p95_latency | feedback | golden_set."""
    text: str
    """What it demands of the candidate, e.g. "error rate at most 5.0% ..."."""
    enabled: bool = True
    """False: this rule is switched off in the configuration."""


@dataclass(frozen=True)
class EligibleVersion:
    """A registered version that is not the champion: a promote button."""

    version: str
    """MLflow model version number."""
    registered_at: datetime | None
    """When MLflow registered it."""
    training_run_id: str | None
    """clm's training run that produced it (its ``clm.training_run_id`` tag)."""
    aliases: list[str]
    """Its MLflow aliases (challenger, previous)."""
    evaluated: bool
    """It has an evaluation in clm's database; without one the gate refuses it."""
    gate: GateVerdict | None
    """Its newest gate decision, if it was gated before."""
    mark: str | None
    """Why it was rolled back or rejected before (and not champion since)."""


@dataclass(frozen=True)
class NextPromotion:
    """How the next ``clm_promotion`` run will go, from the live configuration."""

    strategy: str
    """canary | blue_green | alias."""
    steps: list[int]
    """Percent of traffic on the candidate at each step ([] for ``alias``)."""
    bake_seconds: float
    """Bake window after each traffic step, seconds."""
    poll_seconds: float
    """How often a bake window looks at the candidate's health and metrics, seconds."""
    flow: str
    """The whole promotion in one sentence."""
    rules: list[RuleLine]
    """The safety rules of each bake window (empty for ``alias``: nothing is served)."""
    gate: list[str]
    """The gate's budget, in words."""
    require_approval: bool
    """A person must approve in Airflow after the gate, before anything is deployed (``deploy.require_approval``)."""
    config_revision: int | None
    """The configuration revision these settings come from (None: clm's database is down, the file's values)."""
    champion: str | None
    """The version that serves as champion now."""
    eligible: list[EligibleVersion] = field(default_factory=list)
    """Registered versions that may be promoted, newest first (at most :data:`MAX_LISTED`)."""
    busy: str | None = None
    """Why no promotion can start now (a deployment under way, the deploy lock held); None: one can."""
    problem: str | None = None
    """A store that could not be read (which and why): the list of versions is incomplete."""


def flow(deploy: DeployConfig) -> str:
    """The promotion a strategy makes, in one sentence."""
    bake = f"a {deploy.bake_seconds:g} s bake window"
    if deploy.strategy == "alias":
        return "gate, then the champion alias moves; no serving slot is touched, so there is no bake window"
    if deploy.strategy == "blue_green":
        return f"gate, load into the idle slot, smoke test, all traffic at once, {bake}, then the aliases"
    steps = " → ".join(f"{s}%" for s in deploy.canary_steps)
    return f"gate, load into the idle slot, smoke test, traffic {steps} with {bake} after each, then the aliases"


def rule_lines(deploy: DeployConfig) -> list[RuleLine]:
    """Each bake-window safety rule and its threshold in words; a breach puts all traffic back on the champion."""
    if deploy.strategy == "alias":
        return []
    r = deploy.rules
    judged = f"judged on at least {r.min_requests} request(s) in a window, else not judged"
    lines = [
        RuleLine("health", "the candidate's slot answers its health check throughout"),
        RuleLine("error_rate", f"at most {r.max_error_rate:.1%} of the candidate's requests fail ({judged})"),
        RuleLine("p95_latency", f"95th-percentile latency at most {r.max_p95_ms:g} ms ({judged})"),
    ]
    if r.min_feedback_mean is None:
        lines.append(RuleLine("feedback", "user ratings are not judged (deploy.rules.min_feedback_mean is off)", False))
    else:
        lines.append(RuleLine("feedback", f"mean user rating at least {r.min_feedback_mean:g}"))
    if r.golden_examples_per_task == 0:
        lines.append(RuleLine("golden_set", "no golden set (deploy.rules.golden_examples_per_task is 0)", False))
    else:
        golden = (
            f"{r.golden_examples_per_task} held-out example(s) per task through both slots: the candidate scores at "
            f"most {r.max_golden_drop:g} points below the stable slot and at least {r.min_golden_accuracy:g}"
        )
        lines.append(RuleLine("golden_set", golden))
    return lines


def gate_lines(cfg: ClmConfig) -> list[str]:
    g = cfg.gate
    return [
        f"no task the champion knew may drop by more than {g.max_task_drop:g} accuracy points",
        f"a task new to the candidate needs at least {g.min_new_task_accuracy:g} accuracy",
        "the candidate needs an evaluation in clm's database",
    ]


def build_next_promotion(cfg: ClmConfig, registry: RegistryState | None = None) -> NextPromotion:
    """The plan of the next promotion and the versions that may be promoted; never raises for a store that is
    down (``problem`` says which). ``registry``: MLflow as the caller already read it (``versions=True``)."""
    if registry is None:
        registry = registry_state(cfg, versions=True)
    champion = registry.champion.version if registry.champion else None
    problem = None if registry.status != "unreachable" else f"MLflow: {registry.message}"
    versions = [v for v in (registry.versions or {}).values() if v.version != champion]
    versions = sorted(versions, key=lambda v: int(v.version) if v.version.isdigit() else -1, reverse=True)
    versions = versions[:MAX_LISTED]
    gates: dict[str, GateDecision] = {}
    evaluated: set[str] = set()
    marks: dict[str, str] = {}
    busy = None
    missing = missing_sqlite(cfg.database_url)
    if missing:
        problem = problem or f"clm's database: none yet at {missing}; `clm init` creates it"
    else:
        try:
            gates, evaluated, marks = _read_db(cfg, [v.version for v in versions])
            busy = _busy(cfg)
        except SQLAlchemyError as exc:
            log.warning("next promotion: cannot read clm database %s", redact_url(cfg.database_url), exc_info=True)
            problem = problem or f"clm's database cannot be read: {first_line(exc)}"
    d = cfg.deploy
    return NextPromotion(
        strategy=d.strategy,
        steps=d.steps(),
        bake_seconds=d.bake_seconds,
        poll_seconds=d.poll_seconds,
        flow=flow(d),
        rules=rule_lines(d),
        gate=gate_lines(cfg),
        require_approval=d.require_approval,
        config_revision=cfg.revision,
        champion=champion,
        eligible=[
            EligibleVersion(
                version=v.version,
                registered_at=v.registered_at,
                training_run_id=v.tags.get("clm.training_run_id"),
                aliases=sorted(registry.aliases_by_version.get(v.version, [])),
                evaluated=v.version in evaluated,
                gate=GateVerdict.of(gates.get(v.version)),
                mark=marks.get(v.version),
            )
            for v in versions
        ],
        busy=busy,
        problem=problem,
    )


def promotable(cfg: ClmConfig, version: str) -> None:
    """Refuse a promotion that cannot start: :class:`UnknownVersion` when MLflow has no such version,
    :class:`NotPromotable` when it is the champion or a deployment is under way. MLflow unreachable or clm's
    database missing: :class:`~clm_lib.reporting.stores.StoreDown` naming it."""
    from clm_lib.reporting.stores import DATABASE, down

    registry = registry_state(cfg, versions=True)
    if registry.status == "unreachable":
        raise down("MLflow", registry.message)
    if version not in (registry.versions or {}):
        raise UnknownVersion(f"MLflow has no version {version} of {cfg.registry.model_name}")
    if registry.champion is not None and registry.champion.version == version:
        raise NotPromotable(f"version {version} is already the champion")
    missing = missing_sqlite(cfg.database_url)
    if missing:
        raise down(DATABASE, f"there is no database at {missing} yet; `clm init` creates it")
    busy = _busy(cfg)
    if busy:
        raise NotPromotable(busy)


def _read_db(cfg: ClmConfig, versions: list[str]) -> tuple[dict[str, GateDecision], set[str], dict[str, str]]:
    name = cfg.registry.model_name
    with session_scope(cfg.database_url) as s:
        gates: dict[str, GateDecision] = {}
        rows = s.scalars(
            select(GateDecision)
            .where(GateDecision.model_name == name, GateDecision.model_version.in_(versions))
            .order_by(GateDecision.id)
        )
        for row in rows:  # oldest first: the newest decision of each version wins
            gates[row.model_version] = row
        s.expunge_all()
        evaluated = set(s.scalars(select(Evaluation.model_version).where(Evaluation.model_version.in_(versions))))
        marks = {v: m.text for v, m in history.version_marks(s).items()}
    return gates, {str(v) for v in evaluated}, marks


def _busy(cfg: ClmConfig) -> str | None:
    with session_scope(cfg.database_url) as s:
        active = history.active_deployment(s)
        # A pending one was gated but never deployed: the next promotion supersedes it (rollout.start).
        if active is not None and active.status != "pending":
            return (f"deployment #{active.id} (promotion of version {active.version}) is still {active.status}; "
                    "wait for it to end, or end it with a rollback")  # fmt: skip
    holder = current_holder(cfg.database_url)
    return f"{holder} holds the deploy lock" if holder else None
