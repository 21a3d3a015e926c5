"""Promote a candidate: run the gate against the champion, and move ``champion`` only if it passes.

The decision, its reasons and any alias move are written in one transaction, so the audit log,
the gate table and MLflow's aliases never disagree about why a version serves.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import select

from clm_lib.config import ClmConfig
from clm_lib.db import session_scope
from clm_lib.db.models import Evaluation, GateDecision
from clm_lib.errors import RegistryError
from clm_lib.evaluation.gate import decide
from clm_lib.registry.mlflow_registry import CHALLENGER, CHAMPION, alias_version, client, move_alias

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


def _scores(session, version: str | None) -> dict[str, float] | None:
    if version is None:
        return None
    ev = session.scalars(
        select(Evaluation).where(Evaluation.model_version == version).order_by(Evaluation.id.desc())
    ).first()
    return dict(ev.scores) if ev else None


def promote(cfg: ClmConfig, version: str | None = None, *, actor: str | None = None) -> PromotionResult:
    """Gate ``version`` (default: the challenger) against the champion and promote it if it passes."""
    version = version or alias_version(cfg, CHALLENGER)
    if version is None:
        raise RegistryError(f"no candidate to promote: {cfg.registry.model_name} has no challenger")
    champion = alias_version(cfg, CHAMPION)
    with session_scope(cfg.database_url) as s:
        candidate_scores = _scores(s, version)
        if candidate_scores is None:
            raise RegistryError(f"version {version} has no evaluation in clm's database; it cannot be gated")
        if champion == version:
            return PromotionResult(version, champion, champion, True, ["already champion"])
        result = decide(candidate_scores, _scores(s, champion), cfg.gate)
        s.add(
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
        after = champion
        if result.passed:
            why = f"gate passed against {champion or 'no champion'}"
            move_alias(cfg, s, CHAMPION, version, actor=actor, reason=why)
            move_alias(cfg, s, CHALLENGER, None, actor=actor, reason=f"{version} promoted")
            after = version
    log.info("gate for %s vs %s: %s", version, champion, "passed" if result.passed else "failed")
    return PromotionResult(version, champion, after, result.passed, result.reasons)
