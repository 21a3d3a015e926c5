"""Kafka into the lake through a real Airflow: messages on the topic wake ``clm_ingest_stream`` through its Asset
watcher (``MessageQueueTrigger`` in the stack's triggerer, against the Tansu broker that ``clm up`` started), and
its task ingests them through the same path as landing files, with the malformed ones quarantined. The task's
process is killed with SIGKILL while it runs; Airflow retries it, and every message still counts exactly once.

After the cycle test, the records sent are ones the lake already holds, so nothing new is curated and no drift
check retrains behind the other e2e files' backs; alone, they are new records and are curated.
"""

from __future__ import annotations

import json
import signal
import time

import psutil
import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

BAD = [b"this is not JSON", json.dumps({"task": "routers", "response": "no prompt in this one"}).encode()]


def _good_records(cfg, n: int) -> list[dict]:
    from clm_lib.data import lake
    from clm_lib.demo.stream import generate_task

    held = lake.read_table(cfg, "curated", columns=["task", "prompt", "response"]).slice(0, n).to_pylist()
    # Alone (no cycle before), the lake is empty: new records instead.
    return held if len(held) == n else generate_task(cfg.data.tasks[0], n, seed=11)


def _kill_consume_when_it_runs(client, run_id: str, timeout: float = 240) -> int:
    """SIGKILL the ``consume`` task's process once it runs, found by the title Airflow's task runner gives it
    (``airflow worker -- <task instance id>``); its pid."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        (ti,) = [t for t in client.task_instances("clm_ingest_stream", run_id) if t["task_id"] == "consume"]
        assert ti["state"] not in ("success", "failed"), f"consume ended before it could be killed: {ti}"
        if ti["state"] == "running":
            for proc in psutil.process_iter(["cmdline"]):
                if f"airflow worker -- {ti['id']}" in " ".join(proc.info["cmdline"] or []):
                    proc.send_signal(signal.SIGKILL)
                    return proc.pid
        time.sleep(0.3)
    raise AssertionError(f"consume of {run_id} did not run within {timeout:.0f} s")


def test_messages_on_the_topic_wake_clm_ingest_stream_which_ingests_them_once(airflow_stack, tmp_path):
    from sqlalchemy import select

    from clm_lib.config import load_config
    from clm_lib.db import session_scope
    from clm_lib.db.models import IngestionBatch
    from clm_lib.services.airflow_client import AirflowClient

    cfg = load_config(environ=airflow_stack.env)
    assert cfg.ingest.kafka.enabled, "the e2e stack runs with Kafka ingestion on (tests/e2e/conftest.py)"
    client = AirflowClient(airflow_stack.base_url, airflow_stack.username, airflow_stack.password)
    client.wait_for_dag("clm_ingest_stream", timeout=240)
    known = {r["dag_run_id"] for r in client.runs("clm_ingest_stream")}
    good = _good_records(cfg, 5)
    drop = tmp_path / "kafka.jsonl"
    drop.write_bytes(b"\n".join([*(json.dumps(r).encode() for r in good), *BAD]) + b"\n")

    sent = airflow_stack.clm("kafka", "send", str(drop), timeout=120)
    assert sent.returncode == 0 and "sent 7 of 7" in sent.stdout, sent.stdout + sent.stderr

    run = client.wait_for_new_run("clm_ingest_stream", known, timeout=300, run_type="asset_triggered")
    assert run is not None, "no asset-triggered clm_ingest_stream run within 300 s of the messages"
    _kill_consume_when_it_runs(client, run["dag_run_id"])
    # The retry takes the killed try's ingest lock at once: its process is gone (clm_lib/deploy/lock.py).
    done = client.wait_for_run("clm_ingest_stream", run["dag_run_id"], timeout=420)
    (consume,) = [t for t in client.task_instances("clm_ingest_stream", run["dag_run_id"]) if t["task_id"] == "consume"]
    assert done["state"] == "success" and consume["try_number"] >= 2, (done, consume)

    # The run may have woken on the first message and a later one took the rest: count every Kafka batch.
    deadline = time.monotonic() + 120
    while True:
        with session_scope(cfg.database_url) as s:
            batches = s.scalars(select(IngestionBatch).where(IngestionBatch.source_format == "kafka")).all()
            counts = [(b.rows_curated, b.rows_duplicate, b.rows_quarantined, b.status) for b in batches]
        if sum(c[0] + c[1] + c[2] for c in counts) >= 7 or time.monotonic() > deadline:
            break
        time.sleep(3)
    assert all(c[3] == "committed" for c in counts), counts
    assert sum(c[0] + c[1] for c in counts) == 5 and sum(c[2] for c in counts) == 2, counts
