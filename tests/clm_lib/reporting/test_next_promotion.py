"""The next promotion's plan in words, the versions that may be promoted, and what each promotion recorded of the
configuration it ran with: against a real clm database and MLflow store (``alias`` promotions, no serving)."""

from __future__ import annotations

import pytest

from clm_lib.deploy.config import DeployConfig
from clm_lib.reporting.next_promotion import (
    NotPromotable,
    UnknownVersion,
    build_next_promotion,
    flow,
    promotable,
    rule_lines,
)
from clm_lib.reporting.serving import plan_words


def test_each_strategy_in_one_sentence_and_its_rules_in_words():
    canary = DeployConfig(canary_steps=[5, 25, 100], bake_seconds=30, rules={"min_feedback_mean": 3.5})
    assert flow(canary) == ("gate, load into the idle slot, smoke test, traffic 5% → 25% → 100% with a 30 s bake "
                            "window after each, then the aliases")  # fmt: skip
    rules = {r.rule: r for r in rule_lines(canary)}
    assert list(rules) == ["health", "error_rate", "p95_latency", "feedback", "golden_set"]
    assert rules["error_rate"].text.startswith("at most 5.0% of the candidate's requests fail (judged on at least 20")
    assert rules["feedback"].text == "mean user rating at least 3.5" and rules["feedback"].enabled
    off = {r.rule: r for r in rule_lines(DeployConfig(rules={"golden_examples_per_task": 0}))}
    assert not off["golden_set"].enabled and not off["feedback"].enabled
    assert "all traffic at once, a 60 s bake window" in flow(DeployConfig(strategy="blue_green"))
    assert rule_lines(DeployConfig(strategy="alias")) == []


def test_a_recorded_plan_in_words_and_rows_without_one():
    assert (
        plan_words({"strategy": "canary", "steps": [10, 100], "bake_seconds": 0.5}) == "canary 10 → 100% · bake 0.5 s"
    )
    assert plan_words({"strategy": "alias", "steps": [], "bake_seconds": 60}) == "alias"
    assert plan_words(None) is None and plan_words({"steps": "x"}) is None


@pytest.fixture
def promoted(cfg, sqlite_url, mlflow_uri, register_version):
    """v1 then v2 promoted (``alias``), v3 registered and never gated."""
    from clm_lib.deploy.rollout import rollout

    cfg.database.url, cfg.registry.tracking_uri, cfg.deploy.strategy = sqlite_url, mlflow_uri, "alias"
    for _ in range(2):
        register_version(cfg)
        rollout(cfg)
    register_version(cfg, {"routers": 91.0})
    return cfg


def test_the_versions_that_may_be_promoted_with_their_last_gate(promoted):
    plan = build_next_promotion(promoted)

    assert (plan.strategy, plan.steps, plan.champion, plan.busy, plan.problem) == ("alias", [], "2", None, None)
    assert [(v.version, v.aliases, v.evaluated) for v in plan.eligible] == [
        ("3", ["challenger"], True), ("1", ["previous"], True)]  # fmt: skip
    assert plan.eligible[0].gate is None and plan.eligible[1].gate.passed is True
    assert plan.require_approval is False


def test_what_cannot_be_promoted_is_refused_naming_why(promoted):
    from clm_lib.deploy.lock import acquire, holder_id, release

    promotable(promoted, "3")  # registered, not champion, nothing under way: may start
    with pytest.raises(UnknownVersion, match="MLflow has no version 9 "):
        promotable(promoted, "9")
    with pytest.raises(NotPromotable, match="version 2 is already the champion"):
        promotable(promoted, "2")
    holder = holder_id("a rollback elsewhere")
    assert acquire(promoted.database_url, holder, 60)
    try:
        with pytest.raises(NotPromotable, match="a rollback elsewhere"):
            promotable(promoted, "3")
        assert "a rollback elsewhere" in build_next_promotion(promoted).busy
    finally:
        release(promoted.database_url, holder)


def test_each_promotion_records_the_plan_it_ran_with(promoted):
    from clm_lib.db import session_scope
    from clm_lib.deploy import history

    with session_scope(promoted.database_url) as s:
        plans = [d.details["plan"] for d in history.recent(s, 5)]
    assert plans == [{"strategy": "alias", "steps": [], "bake_seconds": promoted.deploy.bake_seconds,
                      "rules": promoted.deploy.rules.model_dump(mode="json")}] * 2  # fmt: skip
