"""RetrainRequestTrigger: survives Airflow's serialize/re-create round trip and fires on a pending request."""

import asyncio
import importlib
from datetime import UTC, datetime, timedelta

import pytest

from clm_lib.airflow.triggers.retrain import RetrainRequestTrigger


def _first_event(trigger: RetrainRequestTrigger, timeout: float):
    async def first():
        async for event in trigger.run():
            return event

    return asyncio.run(asyncio.wait_for(first(), timeout))


def test_serialize_round_trips_through_the_import_path():
    trigger = RetrainRequestTrigger(since="2026-11-24T12:00:00+00:00", poll_interval=5, clm_conn_id="clm_prod",
                                    config_path="/etc/clm.yaml")  # fmt: skip
    path, kwargs = trigger.serialize()
    module, _, name = path.rpartition(".")  # what the triggerer does with a stored trigger row
    again = getattr(importlib.import_module(module), name)(**kwargs)
    assert type(again) is RetrainRequestTrigger
    assert again.serialize() == (path, kwargs)
    assert kwargs == {"since": "2026-11-24T12:00:00+00:00", "poll_interval": 5.0, "clm_conn_id": "clm_prod",
                      "config_path": "/etc/clm.yaml"}  # fmt: skip
    assert not any("postgres" in str(v) or "sqlite" in str(v) for v in kwargs.values())  # no credentials stored


def test_fires_with_the_pending_request(env_cfg, request_drift):
    now = datetime.now(UTC)
    decision = request_drift(now)
    event = _first_event(RetrainRequestTrigger(since=(now - timedelta(minutes=5)).isoformat(), poll_interval=0.05), 30)
    assert event.payload["status"] == "requested"
    assert event.payload["request"]["check_id"] == decision.check_id
    assert event.payload["request"]["reasons"][0]["detector"] == "volume"


def test_keeps_waiting_while_nothing_is_pending(env_cfg, request_drift):
    now = datetime.now(UTC)
    request_drift(now - timedelta(hours=2))  # older than `since`: already handed out
    with pytest.raises(TimeoutError):
        _first_event(RetrainRequestTrigger(since=(now - timedelta(hours=1)).isoformat(), poll_interval=0.05), 1.0)


def test_a_broken_config_ends_with_an_error_event_instead_of_hanging(env_cfg, tmp_path):
    bad = tmp_path / "clm.yaml"
    bad.write_text("training: {max_steps: -1}\n")
    event = _first_event(RetrainRequestTrigger(since=datetime.now(UTC).isoformat(), config_path=str(bad)), 30)
    assert event.payload["status"] == "error" and "max_steps" in event.payload["message"]
