"""Delivery: what is due per channel, the hourly rate limit, retries with backoff, nothing raised for a channel."""

from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from clm_lib.alerts import acknowledge, raise_alert
from clm_lib.alerts.config import AlertsConfig
from clm_lib.alerts.delivery import channel_states, deliver_pending, pending
from clm_lib.db import session_scope
from clm_lib.db.models import AlertDelivery

T0 = datetime(2026, 12, 7, 3, 0, tzinfo=UTC)


def _cfg(**kw):
    base = {"webhook": {"enabled": True, "url": "http://127.0.0.1:9/hook"}, "backoff_seconds": 60,
            "max_backoff_seconds": 600, "max_attempts": 3}  # fmt: skip
    return AlertsConfig.model_validate({**base, **kw})


def _alerts(url, n, severity="critical", at=T0, prefix="d"):
    with session_scope(url) as s:
        return [raise_alert(s, kind="dag_failed", cause=f"dag_failed:{prefix}{i}", severity=severity, message=f"m{i}",
                            now=at + timedelta(seconds=i)).id for i in range(n)]  # fmt: skip


def _attempts(url):
    with session_scope(url) as s:
        return [
            (d.alert_id, d.channel, d.attempt, d.status)
            for d in s.scalars(select(AlertDelivery).order_by(AlertDelivery.id))
        ]


def test_each_alert_is_sent_once_per_channel(sqlite_url):
    from clm_lib.db import upgrade

    upgrade(sqlite_url)
    ids = _alerts(sqlite_url, 2)
    got = []
    cfg = _cfg(email={"enabled": True, "to": ["ops@example.com"]})
    senders = {"webhook": got.append, "email": got.append}
    r = deliver_pending(sqlite_url, cfg, senders, now=T0 + timedelta(minutes=1))
    assert r.sent == 4 and r.failed == 0
    assert sorted((a.id, a.cause) for a in got) == sorted([(ids[0], "dag_failed:d0"), (ids[1], "dag_failed:d1")] * 2)
    again = deliver_pending(sqlite_url, cfg, senders, now=T0 + timedelta(minutes=2))
    assert again.sent == 0 and len(got) == 4


def test_rate_limit_per_channel_holds_the_rest_for_later_most_severe_first(sqlite_url):
    from clm_lib.db import upgrade

    upgrade(sqlite_url)
    _alerts(sqlite_url, 3, severity="warning")
    [critical] = _alerts(sqlite_url, 1, severity="critical", at=T0 + timedelta(minutes=1), prefix="c")
    cfg, got = _cfg(rate_limit_per_hour=2), []
    r = deliver_pending(sqlite_url, cfg, {"webhook": got.append}, now=T0 + timedelta(minutes=2))
    assert r.sent == 2 and r.rate_limited == 2
    assert got[0].id == critical  # newest, but most severe
    assert deliver_pending(sqlite_url, cfg, {"webhook": got.append}, now=T0 + timedelta(minutes=30)).sent == 0
    later = deliver_pending(sqlite_url, cfg, {"webhook": got.append}, now=T0 + timedelta(minutes=63))
    assert later.sent == 2 and len({a.id for a in got}) == 4


def test_min_severity_and_acknowledged_alerts_are_not_sent(sqlite_url):
    from clm_lib.db import upgrade

    upgrade(sqlite_url)
    [info] = _alerts(sqlite_url, 1, severity="info")
    with session_scope(sqlite_url) as s:
        acked = raise_alert(s, kind="rollback", cause="rollback:m/3", severity="critical", message="x", now=T0).id
        acknowledge(s, acked, "airflow:alice")
    with session_scope(sqlite_url) as s:
        assert pending(s, _cfg(), now=T0 + timedelta(minutes=1)) == ([], 0)
        due, _ = pending(s, _cfg(webhook={"enabled": True, "url": "http://h/x", "min_severity": "info"}),
                         now=T0 + timedelta(minutes=1))  # fmt: skip
        assert [d.alert_id for d in due] == [info]


def test_an_unreachable_channel_is_retried_with_backoff_recorded_and_never_raises(sqlite_url):
    from clm_lib.db import upgrade

    upgrade(sqlite_url)
    [alert_id] = _alerts(sqlite_url, 1)
    cfg, got = _cfg(email={"enabled": True, "to": ["ops@example.com"]}), []

    def down(_alert):
        raise ConnectionRefusedError("[Errno 111] Connection refused to http://u:secret@127.0.0.1:9/hook")

    senders = {"webhook": down, "email": got.append}
    r1 = deliver_pending(sqlite_url, cfg, senders, now=T0 + timedelta(seconds=10))
    assert (r1.sent, r1.failed) == (1, 1)
    # 30 s later: still backing off (60 s after the first failure)
    assert deliver_pending(sqlite_url, cfg, senders, now=T0 + timedelta(seconds=40)).failed == 0
    assert deliver_pending(sqlite_url, cfg, senders, now=T0 + timedelta(seconds=75)).failed == 1
    # second failure: 120 s backoff
    assert deliver_pending(sqlite_url, cfg, senders, now=T0 + timedelta(seconds=150)).failed == 0
    r4 = deliver_pending(sqlite_url, cfg, senders, now=T0 + timedelta(seconds=200))
    assert r4.gave_up == 1
    assert deliver_pending(sqlite_url, cfg, senders, now=T0 + timedelta(days=1)).failed == 0
    assert _attempts(sqlite_url) == [
        (alert_id, "email", 1, "sent"),
        (alert_id, "webhook", 1, "failed"),
        (alert_id, "webhook", 2, "failed"),
        (alert_id, "webhook", 3, "gave_up"),
    ]
    with session_scope(sqlite_url) as s:
        states = {c.channel: c for c in channel_states(s, cfg)}
        errors = [d.error for d in s.scalars(select(AlertDelivery).where(AlertDelivery.channel == "webhook"))]
    assert all("secret" not in e and "Connection refused" in e for e in errors)
    assert states["webhook"].state == "failing" and states["webhook"].failing_since is not None
    assert states["email"].state == "ok" and states["apprise"].state == "disabled"


def test_a_channel_without_a_sender_is_a_recorded_failure(sqlite_url):
    from clm_lib.db import upgrade

    upgrade(sqlite_url)
    _alerts(sqlite_url, 1)
    cfg = _cfg(apprise={"enabled": True})
    r = deliver_pending(sqlite_url, cfg, {"webhook": lambda a: None}, now=T0 + timedelta(minutes=1))
    assert r.no_sender == ["apprise"] and r.failed == 1 and r.sent == 1


def test_bad_config_values_name_the_field():
    import pytest
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=r"webhook\.url"):
        AlertsConfig.model_validate({"webhook": {"enabled": True, "url": "http://me:pw@hooks.example/x"}})
    with pytest.raises(ValidationError, match="email"):
        AlertsConfig.model_validate({"email": {"enabled": True}})
    with pytest.raises(ValidationError, match="rate_limit_per_hour"):
        AlertsConfig.model_validate({"rate_limit_per_hour": 0})
