"""`clm up` runs a local Kafka-protocol broker (Tansu) on 127.0.0.1 only when ingest.kafka is on and points at
loopback; `clm status` sees it healthy and `clm down` stops it."""

from __future__ import annotations

import socket
import time

import pytest

from clm_lib.config import load_config
from clm_lib.services import health, processes


def _cfg(monkeypatch, **kafka):
    for key, value in kafka.items():
        monkeypatch.setenv(f"CLM__INGEST__KAFKA__{key.upper()}", str(value))
    return load_config()


def test_no_broker_unless_kafka_is_on_and_local(runtime_cfg, monkeypatch):
    assert runtime_cfg.ingest.kafka.enabled is False
    assert "kafka" not in [c.name for c in processes.plan_stack(runtime_cfg).components()]
    remote = _cfg(monkeypatch, enabled="true", bootstrap_servers="kafka-1.internal:9092")
    assert processes.plan_stack(remote).kafka_port is None
    local = _cfg(monkeypatch, enabled="true", bootstrap_servers="127.0.0.1:19092")
    stack = processes.plan_stack(local)
    kafka = stack.components()[0]
    assert (stack.kafka_port, kafka.name, kafka.address) == (19092, "kafka", "127.0.0.1:19092")
    argv = " ".join(kafka.argv)
    assert "--listener-url tcp://127.0.0.1:19092" in argv and "0.0.0.0" not in argv
    # An empty broker is a new cluster to the consumer's Delta markers: a new cluster id at every start.
    again = stack.components()[0].argv
    assert kafka.argv[kafka.argv.index("--cluster-id") + 1] != again[again.index("--cluster-id") + 1]
    processes.save_stack(local, stack)
    assert processes.load_stack(local).kafka_port == 19092


def test_the_broker_starts_answers_and_stops(runtime_cfg, monkeypatch):
    from clm_lib.data.stream import ensure_topic

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = _cfg(monkeypatch, enabled="true", bootstrap_servers=f"127.0.0.1:{port}")
    stack = processes.plan_stack(cfg)
    kafka = next(c for c in stack.components() if c.name == "kafka")
    processes.check_ports_free(stack, ["kafka"])
    started = processes.start(cfg, kafka, {})
    try:
        deadline = time.monotonic() + 10
        while not (row := next(r for r in health.stack_status(cfg, stack) if r.name == "kafka")).health.ok:
            assert time.monotonic() < deadline, row
            time.sleep(0.05)
        assert row.pid == started.pid
        assert ensure_topic(cfg.ingest.kafka) is True
        with pytest.raises(Exception, match="already in use"):
            processes.check_ports_free(stack, ["kafka"])
    finally:
        t0 = time.monotonic()
        outcome = processes.stop(cfg, [kafka], timeout=5)["kafka"]
        print(f"stopped: {outcome} in {time.monotonic() - t0:.1f}s")
    assert outcome.outcome in ("stopped", "killed")
    assert processes.find(cfg, kafka) is None
    assert not health.kafka_health(port).ok
