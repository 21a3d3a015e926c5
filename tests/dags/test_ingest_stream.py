"""clm_ingest_stream: off (no watcher, no schedule) by default; with Kafka on, an Asset whose MessageQueueTrigger
only signals under the watcher's own consumer group, and a task that owns the ingestion group."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _load(monkeypatch, watch: str | None):
    from airflow.dag_processing.dagbag import DagBag

    if watch is None:
        monkeypatch.delenv("CLM_KAFKA_WATCH", raising=False)
    else:
        monkeypatch.setenv("CLM_KAFKA_WATCH", watch)
    bag = DagBag(dag_folder=str(REPO / "dags" / "clm_ingest_stream.py"))
    assert bag.import_errors == {}
    return bag.dags["clm_ingest_stream"]


def test_off_by_default_the_dag_has_no_watcher_and_no_schedule(monkeypatch):
    dag = _load(monkeypatch, None)
    assert type(dag.timetable).__name__ == "NullTimetable"
    consume = dag.get_task("consume")
    assert type(consume).__name__ == "StreamIngestOperator" and consume.retries == 2
    assert [a.name for a in consume.outlets] == ["clm_curated"]
    assert dag.max_active_runs == 1 and "clm" in dag.tags


def test_with_kafka_on_a_watcher_signals_without_touching_the_task_group(monkeypatch):
    dag = _load(monkeypatch, "kafka://127.0.0.1:19092/clm.records")
    assert dag.is_paused_upon_creation is False  # a paused DAG's watcher never runs
    (asset,) = dag.timetable.asset_condition.objects
    assert (asset.name, asset.uri) == ("clm_kafka_records", "kafka://127.0.0.1:19092/clm.records")
    (watcher,) = asset.watchers
    classpath, kwargs = watcher.trigger.serialize()
    assert classpath == "airflow.providers.apache.kafka.triggers.await_message.AwaitMessageTrigger"
    assert kwargs["topics"] == ["clm.records"] and kwargs["kafka_config_id"] == "clm_kafka_watcher"
    assert kwargs["apply_function"] == "clm_lib.airflow.kafka.signal"


def test_the_signal_carries_where_a_message_is_never_what_it_holds():
    from clm_lib.airflow.kafka import signal

    class Message:
        def topic(self):
            return "clm.records"

        def partition(self):
            return 1

        def offset(self):
            return 41

        def value(self):
            return b'{"prompt": "secret"}'

    assert signal(Message()) == {"topic": "clm.records", "partition": 1, "offset": 41}


@pytest.mark.parametrize("enabled", [False, True])
def test_the_watcher_connection_uses_its_own_group(enabled, tmp_path):
    from clm_lib.config import load_config
    from clm_lib.services.airflow_home import kafka_env

    cfg = load_config(environ={"CLM_HOME": str(tmp_path), "CLM__INGEST__KAFKA__ENABLED": str(enabled).lower()})
    env = kafka_env(cfg)
    if not enabled:
        assert env == {}
        return
    assert env["CLM_KAFKA_WATCH"] == "kafka://127.0.0.1:19092/clm.records"
    if "AIRFLOW_CONN_CLM_KAFKA_WATCHER" not in os.environ:
        extra = json.loads(env["AIRFLOW_CONN_CLM_KAFKA_WATCHER"])["extra"]
        assert extra["group.id"] == "clm-ingest.watcher" != cfg.ingest.kafka.group_id


def test_with_kafka_on_the_dag_still_parses_without_heavy_imports():
    code = (
        "import sys, runpy\n"
        f"runpy.run_path('{REPO}/dags/clm_ingest_stream.py')\n"
        "print(','.join(m for m in ('pyarrow', 'numpy', 'deltalake', 'great_expectations') if m in sys.modules))\n"
    )
    env = {**os.environ, "CLM_KAFKA_WATCH": "kafka://127.0.0.1:19092/clm.records"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1:] in ([], [""]), f"heavy imports at parse time: {out.stdout}"
