"""clm_ingest_stream: records from the Kafka topic ``ingest.kafka.topic`` -> raw / curated / quarantine, exactly once.

Event-driven: the ``clm_kafka_records`` Asset's watcher (``MessageQueueTrigger(scheme="kafka")``, in the
triggerer) signals each new message under a consumer group of its own; the ``consume`` task owns
``ingest.kafka.group_id``, reads from its committed offsets, ingests one micro-batch per partition per poll window
through the same path as landing files, and commits the offsets only after the Delta commit
(``clm_lib/data/stream.py``, ``clm_lib/airflow/kafka.py``). A retry, after a kill -9 too, adds nothing twice.

When Kafka ingestion is off (``ingest.kafka.enabled: false``, the default) the DAG has no watcher and no schedule;
triggered by hand its task skips. Emits ``clm_curated`` (with counts) when rows were curated, like ``clm_ingest``.
"""

from datetime import timedelta

from clm_lib.airflow.dag import clm_dag
from clm_lib.airflow.kafka import records_asset
from clm_lib.airflow.operators.stream import StreamIngestOperator

records = records_asset()  # None when Kafka ingestion is off

with clm_dag(
    dag_id="clm_ingest_stream",
    schedule=[records] if records is not None else None,
    max_active_runs=1,  # the task owns the consumer group: one consumer at a time
    is_paused_upon_creation=False,  # a paused DAG's watcher never runs (STACK.md)
    doc_md=__doc__,
):
    StreamIngestOperator(task_id="consume", retries=2, retry_delay=timedelta(seconds=10))
