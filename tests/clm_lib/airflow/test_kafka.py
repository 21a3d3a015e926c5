"""The clm_ingest_stream watcher against a real broker: the provider's MessageQueueTrigger, built by
clm_lib/airflow/kafka.py with the connection `clm up` gives the triggerer, signals a new message under its own
consumer group and leaves the task's group untouched (apache/airflow#64205)."""

from __future__ import annotations

import asyncio
import json

from confluent_kafka import Consumer, TopicPartition

from clm_lib.airflow.kafka import records_asset
from clm_lib.config import load_config
from clm_lib.data import stream
from clm_lib.services.airflow_home import kafka_env


def _committed(kafka, group: str) -> int:
    consumer = Consumer({**stream.consumer_config(kafka), "group.id": group})
    try:
        return consumer.committed([TopicPartition(kafka.topic, 0)], timeout=10)[0].offset
    finally:
        consumer.close()


def test_the_watcher_signals_where_a_message_is_and_never_moves_the_task_offsets(kafka_broker, tmp_path,
                                                                                 monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_CLM_KAFKA_WATCHER", raising=False)
    cfg = load_config(environ={"CLM_HOME": str(tmp_path), "CLM__INGEST__KAFKA__ENABLED": "true",
                               "CLM__INGEST__KAFKA__BOOTSTRAP_SERVERS": kafka_broker,
                               "CLM__INGEST__KAFKA__TOPIC": "watched"})  # fmt: skip
    kafka = cfg.ingest.kafka
    for key, value in kafka_env(cfg).items():  # what `clm up` gives the triggerer
        monkeypatch.setenv(key, value)
    stream.ensure_topic(kafka)
    # Sent before the watcher ever ran: it must still wake the DAG (the watcher group starts at the earliest).
    secret = json.dumps({"task": "routers", "prompt": "my password is hunter2", "response": "do not"}).encode()
    assert stream.produce(kafka, [secret]) == 1
    trigger = records_asset().watchers[0].trigger

    async def first_event():
        events = trigger.run()
        try:
            return await asyncio.wait_for(events.__anext__(), 30)
        finally:
            await events.aclose()
            await trigger.trigger.cleanup()

    event = asyncio.run(first_event())
    assert event.payload == {"topic": "watched", "partition": 0, "offset": 0}  # where, never what
    assert _committed(kafka, f"{kafka.group_id}.watcher") == 1
    assert _committed(kafka, kafka.group_id) < 0  # the task's group: untouched, the task still reads offset 0
