"""StreamIngestOperator against a real broker, lake and database: the counts travel in the clm_curated Asset event;
a run with nothing new, or with Kafka off, skips with the reason."""

from __future__ import annotations

import json
import uuid
from types import SimpleNamespace

import pytest
from airflow.sdk.exceptions import AirflowSkipException

from clm_lib.airflow.assets import CURATED
from clm_lib.airflow.operators.stream import StreamIngestOperator
from clm_lib.config import load_config
from clm_lib.data import stream
from clm_lib.demo.stream import generate_task


class _Event:
    extra: dict | None = None


def _context() -> dict:
    return {"outlet_events": {CURATED: _Event()}, "dag": SimpleNamespace(dag_id="clm_ingest_stream"),
            "dag_run": SimpleNamespace(triggering_user_name=None)}  # fmt: skip


@pytest.fixture
def home(cfg, sqlite_url, monkeypatch):
    """A clm home on SQLite whose config the operator resolves from the environment, as a task does."""
    from clm_lib.config import REPO_ROOT

    monkeypatch.setenv("CLM_CONFIG", str(REPO_ROOT / "include" / "clm.yaml"))
    monkeypatch.setenv("CLM_HOME", str(cfg.home))
    monkeypatch.setenv("CLM_DATABASE_URL", sqlite_url)
    return cfg


def test_kafka_off_skips(home):
    with pytest.raises(AirflowSkipException, match="Kafka ingestion is off"):
        StreamIngestOperator(task_id="consume").execute(_context())


def test_a_drop_is_curated_announced_and_not_taken_twice(home, kafka_broker, monkeypatch):
    topic = f"op-{uuid.uuid4().hex[:8]}"
    for key, value in {"ENABLED": "true", "BOOTSTRAP_SERVERS": kafka_broker, "TOPIC": topic,
                       "POLL_WINDOW_S": "0.4"}.items():  # fmt: skip
        monkeypatch.setenv(f"CLM__INGEST__KAFKA__{key}", value)
    kafka = load_config().ingest.kafka
    stream.ensure_topic(kafka)
    records = [json.dumps(r).encode() for r in generate_task("routers", 20, 3)]
    assert stream.produce(kafka, [*records, b"{not json"]) == 21
    ctx = _context()
    result = StreamIngestOperator(task_id="consume").execute(ctx)
    extra = ctx["outlet_events"][CURATED].extra
    assert extra["rows_in"] == 21 and extra["rows_quarantined"] == 1 and extra["source"] == f"kafka:{topic}"
    assert extra["rows_curated"] == result["curated"] > 0
    assert extra["rows_curated"] + extra["rows_duplicate"] + extra["rows_quarantined"] == 21
    with pytest.raises(AirflowSkipException, match=r"no new curated rows \(0 message"):
        StreamIngestOperator(task_id="consume").execute(_context())
