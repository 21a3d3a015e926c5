"""The post-promotion guard against an in-memory serving backend (``fakes.FakeBackend``: what each version does
live is planted in ``behaviour``), a real MLflow registry and clm's database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from clm_lib.db import session_scope
from clm_lib.db.models import AuditEntry, Deployment, utcnow
from clm_lib.deploy import history
from clm_lib.deploy.config import GuardRules, SafetyRules
from clm_lib.deploy.guard import ALERT, guard
from clm_lib.deploy.rollout import start
from clm_lib.registry.aliases import CHAMPION
from clm_lib.registry.mlflow_registry import alias_version

from .fakes import Behaviour


def _alerts(cfg) -> list[AuditEntry]:
    with session_scope(cfg.database_url) as s:
        rows = s.scalars(select(AuditEntry).where(AuditEntry.action == ALERT).order_by(AuditEntry.id)).all()
        s.expunge_all()
        return rows


def _rollbacks(cfg) -> list[Deployment]:
    with session_scope(cfg.database_url) as s:
        rows = s.scalars(select(Deployment).where(Deployment.kind == "rollback")).all()
        s.expunge_all()
        return rows


def _recording(be) -> list[float]:
    """The ``since`` of every live-metrics read of ``be``."""
    asked, read = [], be.live_metrics

    def live_metrics(slot, since):
        asked.append(since)
        return read(slot, since)

    be.live_metrics = live_metrics
    return asked


def test_a_champion_whose_error_rate_breaches_after_promotion_is_rolled_back_audited_and_alerted(two_promoted):
    cfg, be, v1, v2 = two_promoted
    be.behaviour[v2] = Behaviour(error_rate=0.5)  # fine during its bake, failing now

    result = guard(cfg, backend=be)

    assert result.verdict == "breach" and result.champion == v2 and result.phase == "watch"
    assert result.rollback is not None and (result.rollback["from_version"], result.rollback["to_version"]) == (v2, v1)
    assert be.serving() == v1 and alias_version(cfg, CHAMPION) == v1
    [rb] = _rollbacks(cfg)
    assert rb.actor == "clm:guard" and rb.reason.startswith("guard: champion") and "error rate 50.0%" in rb.reason
    [alert] = _alerts(cfg)
    assert alert.id == result.alert_id and alert.from_value == v2
    assert (alert.details["source"], alert.details["kind"], alert.details["action"]) == (
        "deploy.guard", "guard_breach", "rollback",
    )  # fmt: skip
    [rule] = alert.details["breached"]
    assert (rule["rule"], rule["value"], rule["limit"]) == ("error_rate", 0.5, cfg.deploy.rules.max_error_rate)
    with session_scope(cfg.database_url) as s:
        events = [(e.step, e.status) for e in history.events_of(s, result.deployment_id)]
        assert ("guard", "breach") in events and events[-1] == ("guard", "info")
        audited = s.scalars(select(AuditEntry).where(AuditEntry.action == "deploy.guard")).all()
        assert any("error rate 50.0% (25/50), limit 5.0%" in a.reason for a in audited)


def test_a_healthy_champion_is_left_alone_and_judged_at_the_configured_rate(two_promoted):
    cfg, be, _v1, v2 = two_promoted

    first = guard(cfg, backend=be)
    again = guard(cfg, backend=be)

    assert first.verdict == "ok" and {c["rule"] for c in first.checks} == {"health", "error_rate", "p95_latency"}
    assert again.verdict == "skipped" and again.message.startswith("not due")
    due = utcnow() + timedelta(seconds=cfg.deploy.guard.watch_interval_seconds)
    assert guard(cfg, backend=be, now=due).verdict == "ok"
    assert be.serving() == v2 and _rollbacks(cfg) == [] and _alerts(cfg) == []
    with session_scope(cfg.database_url) as s:
        assert history.load(s, first.deployment_id).details["guard"]["verdict"] == "ok"


def test_too_few_requests_are_not_judged(two_promoted):
    cfg, be, _v1, v2 = two_promoted
    be.behaviour[v2] = Behaviour(error_rate=1.0, requests_per_poll=cfg.deploy.rules.min_requests - 1)

    result = guard(cfg, backend=be)

    assert result.verdict == "not_judged" and "not judged" in result.message
    assert be.serving() == v2 and _rollbacks(cfg) == [] and _alerts(cfg) == []


def test_after_its_rollback_the_guard_judges_the_new_champion_on_its_own_traffic_and_never_walks_further_back(
    two_promoted,
):
    cfg, be, v1, v2 = two_promoted
    be.behaviour[v2] = Behaviour(error_rate=0.5)
    assert guard(cfg, backend=be).rollback is not None
    [rb] = _rollbacks(cfg)
    switched = rb.finished_at.replace(tzinfo=UTC).timestamp()
    asked = _recording(be)
    be.behaviour[v1] = Behaviour(error_rate=0.5)  # whatever fails now is not the model: v1 fails too

    result = guard(cfg, backend=be, force=True)
    repeat = guard(cfg, backend=be, force=True)

    assert asked and min(asked) >= switched, "the window starts when the new champion took over"
    assert result.verdict == repeat.verdict == "breach" and result.rollback is None
    assert "the guard only undoes promotions" in " ".join(e for e in _events(cfg, result.deployment_id))
    assert be.serving() == v1 and alias_version(cfg, CHAMPION) == v1 and len(_rollbacks(cfg)) == 1
    assert [a.details["action"] for a in _alerts(cfg)] == ["rollback", "alert_only"], "one alert per breach"


def _events(cfg, deployment_id: int) -> list[str]:
    with session_scope(cfg.database_url) as s:
        return [e.message for e in history.events_of(s, deployment_id)]


def test_after_the_watch_period_a_breach_can_be_set_to_alert_only(two_promoted):
    cfg, be, _v1, v2 = two_promoted
    cfg.deploy.guard.rollback_after_watch = False
    be.behaviour[v2] = Behaviour(p95_ms=cfg.deploy.rules.max_p95_ms * 2)

    result = guard(cfg, backend=be, now=utcnow() + timedelta(minutes=cfg.deploy.guard.watch_minutes + 1))

    assert (result.verdict, result.phase, result.rollback) == ("breach", "continuous", None)
    assert [c["rule"] for c in _alerts(cfg)[0].details["breached"]] == ["p95_latency"]
    assert be.serving() == v2 and _rollbacks(cfg) == []


def test_a_promotion_under_way_is_left_to_its_bake_windows(two_promoted, register_version):
    cfg, be, _v1, v2 = two_promoted
    be.behaviour[v2] = Behaviour(error_rate=0.5)
    start(cfg, register_version(cfg))

    result = guard(cfg, backend=be)

    assert result.verdict == "skipped" and "is under way" in result.message
    assert be.serving() == v2 and _rollbacks(cfg) == []


def test_guard_rules_override_only_what_they_set():
    base = SafetyRules(max_error_rate=0.05, min_requests=20, max_p95_ms=800)

    rules = GuardRules(max_error_rate=0.2).over(base)

    assert (rules.max_error_rate, rules.min_requests, rules.max_p95_ms) == (0.2, 20, 800)
    with pytest.raises(ValueError):
        GuardRules(max_error_rate=2.0)


def test_the_window_never_reaches_before_the_promotion(two_promoted):
    cfg, be, _v1, _v2 = two_promoted
    asked = _recording(be)
    with session_scope(cfg.database_url) as s:
        promoted = history.load(s, max(r.id for r in history.records(s) if r.made_champion)).finished_at

    guard(cfg, backend=be)
    guard(cfg, backend=be, now=datetime.now(UTC) + timedelta(hours=2), force=True)

    assert asked[0] >= promoted.replace(tzinfo=UTC).timestamp()
    assert asked[1] == pytest.approx(asked[0] + 2 * 3600 - cfg.deploy.guard.window_seconds, abs=5)
