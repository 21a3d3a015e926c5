"""The Kafka side of ``clm_ingest_stream``: an Asset whose watcher only *signals* that the topic has messages.

apache/airflow#64205: when the trigger consumes the task's own group, asset events and consumer offsets drift apart
(a message the trigger committed is never read by the task; a task that fails leaves offsets the trigger already
moved). So the watcher's ``MessageQueueTrigger(scheme="kafka")`` reads under a group of its own
(``<ingest.kafka.group_id>.watcher``, the Airflow connection :data:`WATCHER_CONN_ID`) and only turns each message
into a small event (topic, partition, offset); the task (``clm_lib/data/stream.py``) owns ``ingest.kafka.group_id``,
reads from *its* committed offsets, and commits them after the Delta commit. An event is only a wake-up call: one
run drains every message since the last run, however many events queued it.

Parse-time cost: the DAG learns the topic from ``$CLM_KAFKA_WATCH`` (``kafka://<servers>/<topic>``), which
``clm up`` sets for the Airflow processes when ``ingest.kafka.enabled`` (``clm_lib/services/airflow_home.py``),
rather than by loading clm's config, which would pull numpy and pyarrow into every DAG parse. Unset: Kafka is off
and the DAG has no watcher.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from airflow.sdk import Asset

WATCH_ENV = "CLM_KAFKA_WATCH"
"""``kafka://<bootstrap servers>/<topic>`` when Kafka ingestion is on; unset when it is off."""
WATCHER_CONN_ID = "clm_kafka_watcher"
"""Airflow connection (type ``kafka``) of the watcher's consumer: the brokers and the watcher's own group id."""
ASSET_NAME = "clm_kafka_records"


def signal(message: Any) -> dict[str, Any]:
    """The watcher's ``apply_function`` (runs in the triggerer): every message is a wake-up call; the event says
    where it is, never what it holds (a payload may be large, malformed, or sensitive)."""
    return {"topic": message.topic(), "partition": message.partition(), "offset": message.offset()}


def watched_topic() -> tuple[str, str] | None:
    """``(uri, topic)`` from ``$CLM_KAFKA_WATCH``; None when Kafka ingestion is off."""
    uri = os.environ.get(WATCH_ENV, "").strip()
    if not uri:
        return None
    parts = urlsplit(uri)
    topic = parts.path.strip("/")
    if parts.scheme != "kafka" or not parts.netloc or not topic:
        raise ValueError(f"${WATCH_ENV} must be kafka://<bootstrap servers>/<topic>, got {uri!r}")
    return uri, topic


def records_asset() -> Asset | None:
    """The topic as an Asset with a watcher that signals each new message; None when Kafka ingestion is off."""
    watched = watched_topic()
    if watched is None:
        return None
    uri, topic = watched
    from airflow.providers.common.messaging.triggers.msg_queue import MessageQueueTrigger
    from airflow.sdk import Asset, AssetWatcher

    trigger = MessageQueueTrigger(
        scheme="kafka",
        topics=[topic],
        apply_function=f"{__name__}.signal",
        kafka_config_id=WATCHER_CONN_ID,
        poll_timeout=1,
        poll_interval=1,
    )
    return Asset(name=ASSET_NAME, uri=uri, group="clm", watchers=[AssetWatcher(name="clm_kafka_watcher",
                                                                               trigger=trigger)])
