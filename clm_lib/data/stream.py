"""Records consumed from Kafka (``ingest.kafka``): one micro-batch per partition per poll window, exactly once.

The ``clm_ingest_stream`` task owns the consumer group (``ingest.kafka.group_id``); the DAG's trigger only signals,
under a group of its own, so asset events never move these offsets (apache/airflow#64205). A run:

1. assigns itself every partition of the topic, from the group's committed offsets (manual assignment, no group
   join: the DAG runs one task at a time, and a join costs ~25 s on a new group against Tansu, STACK.md);
2. collects one **poll window**: messages until ``poll_window_s`` passed or ``max_records`` arrived;
3. per partition, turns the window's messages into one micro-batch. Each message value must be one JSON object
   ``{task, prompt, response, ...}``; one that is larger than ``max_message_bytes``, not UTF-8, not JSON, not an
   object, or lacks a field (or holds a non-string in one) is **malformed**: it goes to ``quarantine`` with
   ``kafka:<topic>/<partition>@<offset>`` as its source, the offset as its ``line`` and the reason, and never
   blocks the partition. The others become one JSONL body ingested by :func:`clm_lib.data.ingest.ingest_bytes`,
   the files' path (tag, content id, dedupe, GX, Delta raw/curated/quarantine, the ``ingestion_batches`` row), as
   batch ``kafka:<topic>/<partition>@<first>-<last> (<cluster id>)``; each record's metadata says where it came from
   (``kafka_source``: ``kafka:<topic>/<partition>@<offset>``; a producer field of that name is replaced);
4. commits the partition's **Kafka marker** to Delta: the malformed messages' quarantine rows (possibly none) in one
   commit whose app transaction is ``clm.kafka.<cluster id>.<topic>.<partition>`` at version ``<last offset>``;
5. commits the consumer offsets (``last + 1``) **only after** every marker of the window.

Exactly once, whatever step a kill -9 interrupts (the crash tests kill at each ``fault_point``):

- before the marker, the batch row of step 3 (written before its first Delta commit) is the plan: the replay
  starts at the same committed offset, finds the batch that starts there, and collects exactly its messages again,
  so the body, the batch id and the Delta transaction ids are the same and ``ingest_bytes`` resumes or skips it;
- after the marker, ``DeltaTable.transaction_version`` of the partition says which offsets the lake holds: replayed
  messages up to it are skipped (counted ``already_committed``), and only the offsets are committed again.

The marker names the cluster, topic and partition, not the group: a new group id starts from the earliest offset
yet adds nothing already in the lake; a broker started empty again (the local Tansu of ``clm up`` keeps messages in
memory and gets a new cluster id at every start) is a new cluster, whose offsets restart at 0 without being taken
for ones already ingested. A topic deleted and created again under the same name *in the same cluster* restarts its
offsets below the marker: give it a new name, or its first messages are taken as already ingested.

Counts reconcile per poll window: ``in = curated + quarantined + duplicates + already_committed`` (the last one is
non-zero only on a replay). The batch row counts its malformed messages too (``rows_in`` and ``rows_quarantined``),
so it reconciles like a file's.

Malformed messages are not in ``raw`` (there is no record to keep there: they are kept, bytes permitting, in
``quarantine.raw_text``); an oversized one keeps no content at all.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from deltalake import DeltaTable
from sqlalchemy import select

from clm_lib.config import ClmConfig, KafkaConfig
from clm_lib.data import lake
from clm_lib.data.ingest import ingest_bytes
from clm_lib.data.ingest_lock import ingest_lock
from clm_lib.data.records import FIELDS, TIMESTAMP, Problem
from clm_lib.db import session_scope
from clm_lib.db.models import IngestionBatch
from clm_lib.errors import DeployBusyError, IngestError
from clm_lib.faults import fault_point

if TYPE_CHECKING:
    from confluent_kafka import Consumer

log = logging.getLogger(__name__)

TOO_LARGE = "message_too_large"
"""Quarantine reason of a message over ``ingest.kafka.max_message_bytes`` (its content is not kept)."""
SOURCE_KEY = "kafka_source"
"""Metadata field of every record consumed from Kafka: ``kafka:<topic>/<partition>@<offset>``."""
MALFORMED_NOTE = "kafka: malformed messages quarantined"
PLAN_WAIT_S = 30.0
"""How long a replay waits for the messages of a batch planned before a crash (they are in the log: normally ms)."""
LOCK_WAIT_S = 300.0
"""How long a partition's batch waits for a push (or another consumer) holding the ``ingest`` lock."""
RAW_TEXT_CHARS = 4000
"""Quarantine keeps at most this much of a malformed message's text."""


def message_source(topic: str, partition: int, offset: int) -> str:
    return f"kafka:{topic}/{partition}@{offset}"


def batch_source(cluster: str, topic: str, partition: int, first: int, last: int) -> str:
    return f"kafka:{topic}/{partition}@{first}-{last} ({cluster})"


def marker_app_id(cluster: str, topic: str, partition: int) -> str:
    """The Delta app transaction id whose version is the last offset of ``partition`` the lake holds."""
    return f"clm.kafka.{cluster}.{topic}.{partition}"


def consumer_config(kafka: KafkaConfig, **extra: Any) -> dict[str, Any]:
    """confluent-kafka settings of the task's consumer: offsets are committed by clm, never automatically."""
    return {
        "bootstrap.servers": kafka.bootstrap_servers,
        "group.id": kafka.group_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        # A message over max_message_bytes must still be fetched (to be quarantined and consumed past), so the
        # client may fetch a little more than the cap.
        "fetch.max.bytes": max(52428800, kafka.max_message_bytes + 1024**2),
        "max.partition.fetch.bytes": kafka.max_message_bytes + 1024**2,
        "session.timeout.ms": 10000,  # STACK.md: the default makes a new group wait ~25 s on Tansu
        **extra,
    }


@dataclass
class Message:
    partition: int
    offset: int
    value: bytes | None


@dataclass
class PartitionBatch:
    """What one partition's share of a poll window became."""

    partition: int
    first: int
    last: int
    messages: int
    curated: int = 0
    quarantined: int = 0
    """Malformed messages plus the records the batch quarantined (GX)."""
    duplicates: int = 0
    already_committed: int = 0
    """Replayed messages the lake already held (offsets at or below the partition's marker): nothing written."""
    malformed: dict[str, int] = field(default_factory=dict)
    batch_id: str | None = None
    status: str = "committed"
    """``committed``, ``skipped`` (the batch had committed before a crash) or ``already_committed``."""


@dataclass
class WindowResult:
    """One poll window; counts reconcile: ``messages = curated + quarantined + duplicates + already_committed``."""

    messages: int = 0
    curated: int = 0
    quarantined: int = 0
    duplicates: int = 0
    already_committed: int = 0
    seconds: float = 0.0
    offsets: dict[int, int] = field(default_factory=dict)
    """Offsets committed for the group, per partition (the next offset to read)."""
    batches: list[PartitionBatch] = field(default_factory=list)

    def reconciles(self) -> bool:
        return self.messages == self.curated + self.quarantined + self.duplicates + self.already_committed


@dataclass
class StreamResult:
    """One task run: its poll windows (the last one empty unless ``max_windows_per_run`` stopped it)."""

    topic: str
    group_id: str
    cluster: str = ""
    windows: list[WindowResult] = field(default_factory=list)

    def total(self, name: str) -> int:
        return sum(getattr(w, name) for w in self.windows)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for name in ("messages", "curated", "quarantined", "duplicates", "already_committed"):
            out[name] = self.total(name)
        return out


# --- reading one message ------------------------------------------------------------------------------------------
def _decode(value: bytes | None, kafka: KafkaConfig) -> tuple[dict[str, Any] | None, str | None, str | None, str]:
    """``(record, reason, detail, text)``: the record, or why the message is malformed (``text``: what to keep)."""
    if value is None:
        return None, str(Problem.MALFORMED_JSON), "the message has no value (a tombstone)", ""
    if len(value) > kafka.max_message_bytes:
        return None, TOO_LARGE, (f"the message is {len(value)} bytes, over ingest.kafka.max_message_bytes "
                                 f"({kafka.max_message_bytes}); its content was not kept"), ""
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, str(Problem.BAD_ENCODING), f"the message is not UTF-8 ({exc.reason} at byte {exc.start})", \
            value.decode("utf-8", "backslashreplace")
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError) as exc:
        return None, str(Problem.MALFORMED_JSON), f"the message is not JSON: {getattr(exc, 'msg', exc)}", text
    if not isinstance(obj, dict):
        return None, str(Problem.NOT_AN_OBJECT), (f"the message holds a JSON {type(obj).__name__}, not an object "
                                                  f"with {', '.join(FIELDS)}"), text
    missing = [f for f in FIELDS if f not in obj or obj[f] is None]
    wrong = [f for f in FIELDS if f not in missing and not isinstance(obj[f], str)]
    if missing:
        return None, str(Problem.MISSING_COLUMN), "; ".join(f"missing field {f!r}" for f in missing), text
    if wrong:
        return None, str(Problem.NOT_A_STRING), "; ".join(f"{f!r} is a {type(obj[f]).__name__}, not a string"
                                                          for f in wrong), text
    try:  # a lone surrogate escape ("\ud800") parses, but is no text that UTF-8 can hold
        json.dumps(obj, ensure_ascii=False).encode()
    except UnicodeEncodeError as exc:
        return None, str(Problem.BAD_ENCODING), f"the message holds text that is not Unicode ({exc.reason})", text
    except (ValueError, RecursionError) as exc:
        return None, str(Problem.MALFORMED_JSON), f"the message cannot be read as records: {exc}", text
    return obj, None, None, text


@dataclass
class _Split:
    body: bytes
    malformed: pa.Table
    reasons: dict[str, int]


def _split(topic: str, partition: int, messages: list[Message], kafka: KafkaConfig) -> _Split:
    """The JSONL body of the well-formed messages, and the quarantine rows of the others."""
    lines: list[bytes] = []
    bad: dict[str, list[Any]] = {k: [] for k in ("task", "prompt", "response", "raw_text", "reason", "detail",
                                                 "source", "line")}
    for m in messages:
        source = message_source(topic, partition, m.offset)
        obj, reason, detail, text = _decode(m.value, kafka)
        if obj is not None:
            obj[SOURCE_KEY] = source
            lines.append(json.dumps(obj, ensure_ascii=False).encode() + b"\n")
            continue
        fields = json.loads(text) if reason in (Problem.MISSING_COLUMN, Problem.NOT_A_STRING) else {}
        for f in FIELDS:
            bad[f].append(fields.get(f) if isinstance(fields.get(f), str) else None)
        bad["raw_text"].append(text[:RAW_TEXT_CHARS] or None)
        bad["reason"].append(reason)
        bad["detail"].append(detail)
        bad["source"].append(source)
        bad["line"].append(m.offset)
    rows = pa.table({k: pa.array(v, pa.int64() if k == "line" else pa.string()) for k, v in bad.items()})
    return _Split(b"".join(lines), rows, dict(sorted(Counter(bad["reason"]).items())))


# --- the lake's and the database's memory of a partition -------------------------------------------------------
def committed_offset(cfg: ClmConfig, cluster: str, topic: str, partition: int) -> int | None:
    """The last offset of ``partition`` the lake holds (its marker's transaction version), None before the first."""
    uri, options = lake.table_uri(cfg, "quarantine"), lake.storage_options(cfg)
    if not DeltaTable.is_deltatable(uri, storage_options=options):
        return None
    return DeltaTable(uri, storage_options=options).transaction_version(marker_app_id(cluster, topic, partition))


def planned_batch(cfg: ClmConfig, cluster: str, topic: str, partition: int,
                  first: int | None) -> tuple[int, int] | None:
    """``(first, last)`` offsets of a batch of ``partition`` that was started (its row exists) but whose marker was
    not committed: the one starting at ``first``, or with ``first`` None (the group never committed), the earliest."""
    prefix, suffix = f"kafka:{topic}/{partition}@", f" ({cluster})"
    with session_scope(cfg.database_url) as s:
        sources = s.scalars(select(IngestionBatch.source).where(IngestionBatch.source.startswith(prefix,
                                                                                                 autoescape=True)))
        ranges = []
        for src in sources:
            if not src.endswith(suffix):
                continue
            start, _, end = src[len(prefix):-len(suffix)].partition("-")
            if start.isdigit() and end.isdigit():
                ranges.append((int(start), int(end)))
    done = committed_offset(cfg, cluster, topic, partition)
    open_ = sorted(r for r in ranges if (done is None or r[1] > done) and (first is None or r[0] == first))
    return open_[-1] if first is not None and open_ else (open_[0] if open_ else None)


def _count_malformed(cfg: ClmConfig, batch_id: str, split: _Split) -> None:
    """Add the malformed messages to the batch row's counts, once (the note marks it done)."""
    n = split.malformed.num_rows
    if not n:
        return
    with session_scope(cfg.database_url) as s:
        row = s.get(IngestionBatch, batch_id)
        notes = list(row.notes or [])
        if any(str(note).startswith(MALFORMED_NOTE) for note in notes):
            return
        reasons = dict(row.quarantine_reasons or {})
        for reason, count in split.reasons.items():
            reasons[reason] = reasons.get(reason, 0) + count
        row.rows_in += n
        row.rows_quarantined += n
        row.quarantine_reasons = dict(sorted(reasons.items()))
        row.notes = [*notes, f"{MALFORMED_NOTE}: {n} ({', '.join(f'{k} {v}' for k, v in split.reasons.items())}), "
                             "source kafka:<topic>/<partition>@<offset>"]


def ingest_partition(cfg: ClmConfig, cluster: str, topic: str, partition: int, messages: list[Message],
                     actor: str | None = None) -> PartitionBatch:
    """Steps 3 and 4 of the module docstring for one partition's messages (ascending offsets)."""
    done = committed_offset(cfg, cluster, topic, partition)
    fresh = [m for m in messages if done is None or m.offset > done]
    out = PartitionBatch(partition, messages[0].offset, messages[-1].offset, len(messages),
                         already_committed=len(messages) - len(fresh))
    if not fresh:
        out.status = "already_committed"
        log.info("kafka %s/%d: offsets %d-%d already in the lake (marker at %s); nothing written",
                 topic, partition, out.first, out.last, done)
        return out
    first, last = fresh[0].offset, fresh[-1].offset
    split = _split(topic, partition, fresh, cfg.ingest.kafka)
    source = batch_source(cluster, topic, partition, first, last)
    try:
        with ingest_lock(cfg, f"kafka {topic}/{partition}", wait_seconds=LOCK_WAIT_S):
            result = ingest_bytes(cfg, split.body, fmt="jsonl", source=source, name=source, actor=actor,
                                  source_format="kafka")
            fault_point("kafka.after_ingest")
            _count_malformed(cfg, result.batch_id, split)
            now = datetime.now(UTC)
            rows = split.malformed.append_column("batch_id", pa.repeat(pa.scalar(result.batch_id),
                                                                       split.malformed.num_rows))
            rows = rows.append_column("ingested_at", pa.repeat(pa.scalar(now, TIMESTAMP), rows.num_rows))
            lake.append(cfg, "quarantine", rows, app_id=marker_app_id(cluster, topic, partition), txn_version=last)
            fault_point("kafka.after_delta_commit")
    except DeployBusyError as exc:
        raise IngestError(f"{source}: another ingest held the lock for {LOCK_WAIT_S:.0f} s ({exc}); the offsets "
                          "were not committed, so the next run reads these messages again") from None
    with session_scope(cfg.database_url) as s:  # the batch's counts, also right when it had committed before
        row = s.get(IngestionBatch, result.batch_id)
        out.curated, out.quarantined, out.duplicates = row.rows_curated, row.rows_quarantined, row.rows_duplicate
    out.malformed, out.batch_id, out.status = split.reasons, result.batch_id, result.status
    if out.curated + out.quarantined + out.duplicates != len(fresh):
        raise IngestError(f"{source}: counts do not reconcile ({len(fresh)} messages != {out.curated} curated + "
                          f"{out.quarantined} quarantined + {out.duplicates} duplicate)")
    return out


# --- the consumer -----------------------------------------------------------------------------------------------
@contextmanager
def open_consumer(kafka: KafkaConfig, timeout: float = 10.0) -> Iterator[tuple[Consumer, str, list[int]]]:
    """A consumer assigned every partition of the topic at the group's committed offsets, the cluster id (offsets
    mean something only within one cluster: a broker started empty again is a new one), and the partitions."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer(consumer_config(kafka))
    try:
        cluster_meta = consumer.list_topics(kafka.topic, timeout=timeout)
        meta = cluster_meta.topics.get(kafka.topic)
        if meta is None or meta.error is not None or not meta.partitions:
            why = meta.error if meta is not None and meta.error is not None else "it does not exist"
            raise IngestError(f"Kafka topic {kafka.topic!r} on {kafka.bootstrap_servers} cannot be read ({why}): "
                              "create it (clm up does, for the local broker)")
        partitions = sorted(meta.partitions)
        committed = consumer.committed([TopicPartition(kafka.topic, p) for p in partitions], timeout=timeout)
        consumer.assign([TopicPartition(kafka.topic, tp.partition, tp.offset if tp.offset >= 0 else OFFSET_BEGINNING)
                         for tp in committed])
        yield consumer, cluster_meta.cluster_id or "kafka", partitions
    finally:
        consumer.close()


def _next_offsets(consumer: Consumer, topic: str, partitions: list[int], timeout: float) -> dict[int, int | None]:
    from confluent_kafka import TopicPartition

    committed = consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=timeout)
    return {tp.partition: tp.offset if tp.offset >= 0 else None for tp in committed}


def _collect(consumer: Consumer, cfg: ClmConfig, cluster: str, partitions: list[int]) -> dict[int, list[Message]]:
    """One poll window. A partition whose batch was started before a crash is read up to exactly that batch's end."""
    from confluent_kafka import KafkaError, KafkaException, TopicPartition

    kafka = cfg.ingest.kafka
    plans: dict[int, int] = {}
    for p, nxt in _next_offsets(consumer, kafka.topic, partitions, 10.0).items():
        if (planned := planned_batch(cfg, cluster, kafka.topic, p, nxt)) is not None:
            plans[p] = planned[1]
    got: dict[int, list[Message]] = {}
    count, start = 0, time.monotonic()
    deadline = start + kafka.poll_window_s

    def owed() -> bool:  # a planned batch not fully read yet
        return any(not got.get(p) or got[p][-1].offset < last for p, last in plans.items())

    while True:
        now = time.monotonic()
        if (now >= deadline or count >= kafka.max_records) and not owed():
            break
        if now >= deadline + PLAN_WAIT_S:
            raise IngestError(f"Kafka topic {kafka.topic!r}: the messages of a batch started before a crash "
                              f"(partitions {sorted(plans)}, up to offsets {plans}) did not arrive again within "
                              f"{PLAN_WAIT_S:.0f} s; were they deleted by retention?")
        want = max(1, min(500, kafka.max_records - count))
        for m in consumer.consume(want, timeout=max(0.05, min(0.5, deadline - now))):
            if m.error() is not None:
                if m.error().code() == KafkaError._PARTITION_EOF:
                    continue
                raise KafkaException(m.error())
            p, offset = m.partition(), m.offset()
            if p in plans and offset > plans[p]:
                continue  # after the planned batch: read again by the next window (seek below)
            got.setdefault(p, []).append(Message(p, offset, m.value()))
            count += 1
    for p, last in plans.items():  # messages past a planned batch were dropped: read them again next window
        consumer.seek(TopicPartition(kafka.topic, p, last + 1))
    return got


def consume(cfg: ClmConfig, *, actor: str | None = None, max_windows: int | None = None) -> StreamResult:
    """Consume the topic in poll windows until one is empty or ``ingest.kafka.max_windows_per_run`` passed.
    Raises :class:`IngestError` when the topic cannot be read; a malformed message never raises."""
    from confluent_kafka import TopicPartition

    kafka = cfg.ingest.kafka
    result = StreamResult(kafka.topic, kafka.group_id)
    with open_consumer(kafka) as (consumer, cluster, partitions):
        result.cluster = cluster
        for _ in range(max_windows or kafka.max_windows_per_run):
            started = time.monotonic()
            got = _collect(consumer, cfg, cluster, partitions)
            window = WindowResult()
            for p in sorted(got):
                batch = ingest_partition(cfg, cluster, kafka.topic, p, got[p], actor)
                window.batches.append(batch)
                window.offsets[p] = batch.last + 1
                for name in ("curated", "quarantined", "duplicates", "already_committed"):
                    setattr(window, name, getattr(window, name) + getattr(batch, name))
                window.messages += batch.messages
            if window.offsets:  # only after every Delta commit of the window
                consumer.commit(offsets=[TopicPartition(kafka.topic, p, o) for p, o in window.offsets.items()],
                                asynchronous=False)
            window.seconds = round(time.monotonic() - started, 3)
            if not window.reconciles():
                raise IngestError(f"Kafka window does not reconcile: {window}")
            result.windows.append(window)
            log.info("kafka %s: window of %d message(s): %d curated, %d quarantined, %d duplicate, %d already "
                     "committed; offsets %s", kafka.topic, window.messages, window.curated, window.quarantined,
                     window.duplicates, window.already_committed, window.offsets)
            if not window.messages:
                break
    return result


# --- topics and producing (clm up, the demo, tests) -----------------------------------------------------------------
def ensure_topic(kafka: KafkaConfig, partitions: int = 1, timeout: float = 10.0) -> bool:
    """Create the topic when it does not exist (no broker auto-creates it on subscribe); True when created."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": kafka.bootstrap_servers})
    if kafka.topic in admin.list_topics(timeout=timeout).topics:
        return False
    for future in admin.create_topics([NewTopic(kafka.topic, num_partitions=partitions,
                                                replication_factor=1)]).values():
        future.result(timeout)
    return True


def produce(kafka: KafkaConfig, values: list[bytes], *, partition: int | None = None, timeout: float = 30.0) -> int:
    """Send ``values`` to the topic (the demo's drop, tests); returns how many the broker acknowledged."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": kafka.bootstrap_servers, "linger.ms": 5,
                         "message.max.bytes": max(1_000_000, max((len(v) for v in values), default=0) + 1024)})
    acked = 0

    def delivered(err: Any, _msg: Any) -> None:
        nonlocal acked
        if err is None:
            acked += 1
        else:
            log.error("kafka: a message was not delivered: %s", err)

    for value in values:
        kwargs = {} if partition is None else {"partition": partition}
        producer.produce(kafka.topic, value, on_delivery=delivered, **kwargs)
        producer.poll(0)
    producer.flush(timeout)
    return acked
