"""The bake window's rules, the deploy config's validation, and the golden set drawn from a real lake."""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa
import pytest
from pydantic import ValidationError

from clm_lib.deploy import safety
from clm_lib.deploy.config import DeployConfig, SafetyRules
from clm_lib.deploy.golden import GoldenSet
from clm_lib.serving.backends.base import SlotMetrics, SlotStatus

RULES = SafetyRules(max_error_rate=0.05, max_p95_ms=500, min_requests=20, min_feedback_mean=0.5)


def _metrics(requests: int, errors: int = 0, p95: float | None = 100.0, feedback: float | None = None):
    return SlotMetrics("green", 0.0, 1.0, requests, errors, p95, 1 if feedback is not None else 0, feedback)


def _verdicts(checks) -> dict[str, bool | None]:
    return {c.rule: c.ok for c in checks}


def test_too_little_traffic_is_not_judged_rather_than_passed():
    checks = safety.live(_metrics(5, errors=5), RULES)

    assert _verdicts(checks) == {"error_rate": None, "p95_latency": None, "feedback": None}
    assert "not judged: 5 request(s) in the window, fewer than 20" in checks[0].message
    assert safety.breaches(checks) == []


@pytest.mark.parametrize(
    ("metrics", "breached"),
    [
        (_metrics(100, errors=5), []),
        (_metrics(100, errors=6), ["error_rate"]),
        (_metrics(100, p95=501.0), ["p95_latency"]),
        (_metrics(100, feedback=0.4), ["feedback"]),
        (_metrics(100, errors=50, p95=900.0, feedback=0.1), ["error_rate", "p95_latency", "feedback"]),
    ],
)
def test_each_limit_is_inclusive_and_breached_only_beyond_it(metrics, breached):
    assert [c.rule for c in safety.breaches(safety.live(metrics, RULES))] == breached


def test_a_down_slot_is_a_breach_that_says_why():
    down = SlotStatus("green", "3", healthy=False, detail="process not running")

    check = safety.health(down, "green")
    assert (check.ok, check.message) == (False, "green is down: process not running")
    assert safety.health(None, "green").ok is False
    assert safety.health(SlotStatus("green", "3", healthy=True), "green").ok


def test_the_golden_floor_is_the_stable_score_minus_the_allowed_drop_or_the_minimum():
    rules = SafetyRules(max_golden_drop=10, min_golden_accuracy=30)

    assert safety.golden(80.0, 90.0, rules).ok and not safety.golden(79.9, 90.0, rules).ok
    assert safety.golden(30.0, None, rules).ok and not safety.golden(29.0, None, rules).ok
    assert safety.golden(35.0, 20.0, rules).limit == 30.0  # the minimum holds even when the stable slot is worse


@pytest.mark.parametrize(
    ("steps", "message"),
    [([10, 50], "the last canary step must be 100"), ([50, 10, 100], "strictly increasing"), ([0, 100], "1..100")],
)
def test_canary_steps_are_validated(steps, message):
    with pytest.raises(ValidationError, match=message):
        DeployConfig(canary_steps=steps)


def test_each_strategy_takes_its_steps():
    assert DeployConfig(canary_steps=[25, 100]).steps() == [25, 100]
    assert DeployConfig(strategy="blue_green").steps() == [100]
    assert DeployConfig(strategy="alias").steps() == []


def test_the_golden_set_is_the_stable_eval_subset_of_the_candidates_tasks(deploy_cfg, register_version):
    from clm_lib.data import lake

    now = datetime.now(UTC)
    rows = [
        {"id": f"{task}-{i}", "task": task, "prompt": f"{task} question {i}", "response": f"{task} answer {i}",
         "split": "eval" if i % 2 else "train", "source": "t", "batch_id": "b", "line": i, "ingested_at": now,
         "metadata": "{}"}
        for task in ("routers", "billing", "thermostats") for i in range(10)
    ]  # fmt: skip
    assert GoldenSet.load(deploy_cfg, "1") is None, "no lake yet: the rule cannot judge"
    lake.append(deploy_cfg, "curated", pa.Table.from_pylist(rows))
    version = register_version(deploy_cfg, {"routers": 90.0, "billing": 80.0})

    golden = GoldenSet.load(deploy_cfg, version)

    assert len(golden) == 8  # golden_examples_per_task (4) of each task the candidate learnt, eval rows only
    assert golden.prompts[:4] == [f"billing question {i}" for i in (1, 3, 5, 7)]
    assert golden.references[0] == "billing answer 1" and golden.model == "clm-assistant"
    deploy_cfg.deploy.rules.golden_examples_per_task = 0
    assert GoldenSet.load(deploy_cfg, version) is None
