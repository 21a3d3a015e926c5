"""The gate and the alias moves of a promotion.

:func:`gate` compares a candidate's evaluation with the champion's and records the decision;
:func:`move_champion` points ``champion`` at a version and ``previous`` at the one it replaces (what a
rollback returns to). :func:`promote` is both in one transaction, with no serving involved: the ``alias``
strategy. With serving, :mod:`clm_lib.deploy.rollout` runs the gate, then traffic steps, then the move.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import select

from clm_lib.config import ClmConfig
from clm_lib.db import session_scope
from clm_lib.db.models import Evaluation, GateDecision
from clm_lib.errors import RegistryError
from clm_lib.evaluation.gate import GateResult, decide
from clm_lib.evaluation.stored_metrics import gate_inputs
from clm_lib.registry.aliases import CHALLENGER, CHAMPION, PREVIOUS
from clm_lib.registry.mlflow_registry import alias_version, client, move_alias

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PromotionResult:
    version: str
    champion_before: str | None
    champion_after: str | None
    passed: bool
    reasons: list[str]

    def as_dict(self) -> dict:
        return self.__dict__.copy()


def _evaluation(session, version: str | None) -> Evaluation | None:
    if version is None:
        return None
    return session.scalars(
        select(Evaluation).where(Evaluation.model_version == version).order_by(Evaluation.id.desc())
    ).first()


def _scores(session, version: str | None) -> dict[str, float] | None:
    ev = _evaluation(session, version)
    return dict(ev.scores) if ev else None


def _removed_task(session, version: str, champion: str | None) -> str | None:
    """The task the candidate's run took out of the champion (``clm_lib.training.removal``), if it is this one's."""
    from clm_lib.db.models import TrainingRun

    run = session.scalars(select(TrainingRun).where(TrainingRun.model_version == version)).first()
    removed = (run.trigger or {}).get("remove_task") if run is not None else None
    return str(removed) if removed and run.parent_model_version == champion else None


def gate(cfg: ClmConfig, session, version: str, champion: str | None) -> GateResult:
    """Gate ``version`` against ``champion``; record the decision (clm's DB and an MLflow tag)."""
    candidate_ev = _evaluation(session, version)
    if candidate_ev is None:
        raise RegistryError(f"version {version} has no evaluation in clm's database; it cannot be gated")
    # Both sides on one metric per task, even if the config changed it in between.
    candidate_scores, champion_scores, metrics, notes = gate_inputs(candidate_ev, _evaluation(session, champion))
    removed = _removed_task(session, version, champion)
    if removed and champion_scores:  # a task an operator removed on purpose is not a regression of the candidate
        champion_scores = {t: s for t, s in champion_scores.items() if t != removed}
    result = decide(candidate_scores, champion_scores, cfg.gate, metrics)
    result.reasons.extend(notes)
    if removed:
        result.reasons.insert(0, f"{removed}: removed on purpose (remove_task), not compared")
    session.add(
        GateDecision(
            model_name=cfg.registry.model_name,
            model_version=version,
            champion_version=champion,
            passed=result.passed,
            reasons=result.reasons,
        )
    )
    client(cfg).set_model_version_tag(
        cfg.registry.model_name, version, "clm.gate", "passed" if result.passed else "failed"
    )
    log.info("gate for %s vs %s: %s", version, champion, "passed" if result.passed else "failed")
    return result


def move_champion(cfg: ClmConfig, session, version: str, *, actor: str | None, reason: str) -> str | None:
    """Point ``champion`` at ``version``, then ``previous`` at the champion it replaces; returns that one.

    For :func:`promote` (no serving, no deployment row). Deployments write the aliases from clm's history instead
    (:func:`clm_lib.deploy.reconcile.reconcile_aliases`)."""
    before = alias_version(cfg, CHAMPION)
    if before == version:
        return before
    # champion first: if the second write fails, previous still names a version that is not the new champion
    move_alias(cfg, session, CHAMPION, version, actor=actor, reason=reason)
    if before is not None:
        move_alias(cfg, session, PREVIOUS, before, actor=actor, reason=f"replaced by {version}: {reason}")
    if alias_version(cfg, CHALLENGER) == version:
        move_alias(cfg, session, CHALLENGER, None, actor=actor, reason=f"{version} promoted")
    return before


def promote(cfg: ClmConfig, version: str | None = None, *, actor: str | None = None) -> PromotionResult:
    """Gate ``version`` (default: the challenger) against the champion and move the aliases if it passes."""
    version = version or alias_version(cfg, CHALLENGER)
    if version is None:
        raise RegistryError(f"no candidate to promote: {cfg.registry.model_name} has no challenger")
    champion = alias_version(cfg, CHAMPION)
    with session_scope(cfg.database_url) as s:
        if _scores(s, version) is None:
            raise RegistryError(f"version {version} has no evaluation in clm's database; it cannot be gated")
        if champion == version:
            return PromotionResult(version, champion, champion, True, ["already champion"])
        result = gate(cfg, s, version, champion)
        after = champion
        if result.passed:
            move_champion(cfg, s, version, actor=actor, reason=f"gate passed against {champion or 'no champion'}")
            after = version
    return PromotionResult(version, champion, after, result.passed, result.reasons)
