"""Records pushed over HTTP (``POST /clm/api/v1/ingest``): one POST is one micro-batch, ingested as a landing file.

A body (a JSON array, NDJSON, or CSV) becomes one batch through :func:`clm_lib.data.ingest.ingest_bytes`: the same
reading, content ids, dedupe, GX suite, Delta ``raw``/``curated``/``quarantine`` commits and ``ingestion_batches``
row as a file, with the source ``webhook:<caller>``. A JSON array is turned into one line per element first, so an
element that is not an object is quarantined (``not_an_object``) like such a line of a file, never dropped; a single
JSON value that is not an array is one record. The answer says what became of each record (curated, duplicate,
quarantined with the reason) and its content id; its counts reconcile (``in = curated + duplicate + quarantined``).

Size bounds, not time: a POST is its own micro-batch, refused whole (:class:`TooLarge`) above
``data.webhook.max_body_bytes`` or ``max_records``. Batching many small POSTs together by time would delay every
answer; a caller with many records sends them in one POST instead.

Pushes are ingested one at a time, across processes and machines, under the database lock ``ingest`` (the deploy
lock's mechanism, with its own row): the content-id dedupe reads ``curated`` before it writes, so two pushes holding
the same new record must not interleave. A push holder that dies frees the lock within its lease.

``Idempotency-Key``: the key is stored with the sha256 of the body (``ingest_idempotency``, its primary key) before
anything is ingested, and with the answer once the batch commits. The same key and body again get that answer back
(``replayed``), nothing ingested; the same key with another body, or from another caller, is :class:`KeyConflict`.
The batch is named after the key, so a retry after a crash resumes the same batch (Delta transaction ids keep its
commits single) rather than starting another.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import re
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

import pyarrow.compute as pc

from clm_lib import audit
from clm_lib.config import ClmConfig
from clm_lib.data import lake
from clm_lib.data.ingest import BatchResult, batch_id_for, ingest_bytes
from clm_lib.data.ingest_lock import ingest_lock
from clm_lib.data.readers import ReadResult, read_text
from clm_lib.data.records import content_ids, normalise
from clm_lib.db import session_scope
from clm_lib.db.models import IngestIdempotency, IngestionBatch, utcnow
from clm_lib.errors import ClmError, DeployBusyError, IngestError

FORMATS = ("json", "jsonl", "csv")
KEY = re.compile(r"^[\x21-\x7e]{1,200}$")
"""An Idempotency-Key: 1 to 200 printable ASCII characters, no spaces."""


class PushError(ClmError):
    """A push refused as a whole: nothing was ingested."""


class TooLarge(PushError):
    """Over ``data.webhook.max_body_bytes`` or ``max_records`` (413)."""


class NotReadable(PushError):
    """A body that is not JSON at all, or a key that is not printable (422)."""


class KeyConflict(PushError):
    """The Idempotency-Key was used with another body or by another caller (409)."""


class Busy(PushError):
    """Another push held the lock longer than ``data.webhook.lock_wait_s`` (503)."""


class Failed(PushError):
    """The batch could not be ingested (the GX suite cannot be loaded, or it crashed ``data.max_attempts`` times):
    nothing was curated (503); the error is on the batch's row."""


@dataclass(frozen=True)
class RecordOutcome:
    """What became of one pushed record."""

    line: int
    """1-based: the element of a JSON array, the line of NDJSON, the first line of a CSV record (1 is the header)."""
    outcome: str
    """``curated``, ``duplicate`` (already curated, or repeated earlier in the POST) or ``quarantined``."""
    id: str | None = None
    """The content id; None for a record that could not be read into task, prompt and response."""
    reason: str | None = None
    """Quarantined: the machine reason (``malformed_json``, ``unknown_task``...)."""
    detail: str | None = None
    """Quarantined: the reason in words."""


@dataclass(frozen=True)
class PushResult:
    """One POST's micro-batch: its counts reconcile (``rows_in = curated + duplicate + quarantined``)."""

    batch_id: str
    source: str
    status: str
    """``committed``; ``skipped`` when the batch had committed before (a retry after a crash)."""
    rows_in: int
    rows_curated: int
    rows_duplicate: int
    rows_quarantined: int
    quarantine_reasons: dict[str, int] = field(default_factory=dict)
    outcomes: list[RecordOutcome] = field(default_factory=list)
    """Per record, in order: the first ``data.webhook.max_outcomes``."""
    outcomes_left_off: int = 0
    """Records whose outcome is not listed (the counts include them)."""
    idempotency_key: str | None = None
    notes: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, stored: dict[str, Any]) -> PushResult:
        return cls(**{**stored, "outcomes": [RecordOutcome(**o) for o in stored.get("outcomes", [])]})


def json_lines(data: bytes) -> bytes:
    """A JSON body as NDJSON: one line per element of an array (one line for any other value)."""
    try:
        value = json.loads(data.removeprefix(codecs.BOM_UTF8))
    except (ValueError, RecursionError) as exc:
        where = f" at line {exc.lineno} column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
        raise NotReadable(f"the body is not JSON{where}: {getattr(exc, 'msg', exc)}") from None
    items = value if isinstance(value, list) else [value]
    return b"".join(json.dumps(v, ensure_ascii=False).encode() + b"\n" for v in items)


def _check_size(cfg: ClmConfig, size: int) -> None:
    limit = cfg.data.webhook.max_body_bytes
    if size > limit:
        raise TooLarge(
            f"the body is larger than data.webhook.max_body_bytes ({limit} bytes): nothing was ingested; "
            "send fewer records per POST"
        )


def _stored(cfg: ClmConfig, key: str, sha: str, actor: str, *, claim_batch: str | None = None) -> PushResult | None:
    """The stored answer for ``key`` with this body; None when there is none yet. With ``claim_batch`` (under the
    lock), a new key is claimed for that batch; a claim left ``running`` by a push that died is taken over."""
    with session_scope(cfg.database_url) as s:
        row = s.get(IngestIdempotency, key)
        if row is not None and (row.body_sha256 != sha or row.actor != actor):
            raise KeyConflict(
                f"Idempotency-Key {key!r} was used for another request (another body or caller) at "
                f"{row.created_at:%Y-%m-%d %H:%M:%S} UTC: nothing was ingested; use a new key"
            )
        if row is not None and row.status == "done":
            return PushResult.of(row.response)
        if row is None and claim_batch is not None:
            s.add(IngestIdempotency(key=key, body_sha256=sha, actor=actor, batch_id=claim_batch, status="running"))
    return None


def _outcomes(cfg: ClmConfig, batch_id: str, read: ReadResult) -> list[RecordOutcome]:
    """Per record of ``read``, where the batch put it: its curated and quarantined rows, duplicates the rest."""
    mine = pc.field("batch_id") == batch_id
    curated = lake.read_table(cfg, "curated", columns=["line", "id"], where=mine)
    quarantine = lake.read_table(cfg, "quarantine", columns=["line", "id", "reason", "detail"], where=mine)
    cur = dict(zip(curated["line"].to_pylist(), curated["id"].to_pylist(), strict=True))
    bad = {r["line"]: r for r in quarantine.to_pylist()}
    rows = read.table
    ids = content_ids(*(normalise(rows[f].combine_chunks().fill_null("")) for f in ("task", "prompt", "response")))
    out = []
    for line, problem, rid in zip(rows["line"].to_pylist(), rows["problem"].to_pylist(), ids.to_pylist(),
                                  strict=True):  # fmt: skip
        if line in cur:
            out.append(RecordOutcome(line, "curated", cur[line]))
        elif line in bad:
            q = bad[line]
            out.append(RecordOutcome(line, "quarantined", q["id"], q["reason"], q["detail"]))
        else:
            out.append(RecordOutcome(line, "duplicate", None if problem else rid))
    return out


def _answer(cfg: ClmConfig, result: BatchResult, read: ReadResult, key: str | None) -> PushResult:
    """The answer, counts from the batch's row (also right for a batch found already committed)."""
    with session_scope(cfg.database_url) as s:
        row = s.get(IngestionBatch, result.batch_id)
        counts = (row.rows_in, row.rows_curated, row.rows_duplicate, row.rows_quarantined)
        reasons = dict(row.quarantine_reasons or {})
    # Refused as a whole (over data.max_decoded_bytes): one quarantine row stands for the body, no record has its own.
    outcomes = [] if result.refused else _outcomes(cfg, result.batch_id, read)
    shown = cfg.data.webhook.max_outcomes
    return PushResult(result.batch_id, result.source, result.status, *counts, quarantine_reasons=reasons,
                      outcomes=outcomes[:shown], outcomes_left_off=max(0, len(outcomes) - shown),
                      idempotency_key=key, notes=list(result.notes))  # fmt: skip


def _finish(cfg: ClmConfig, answer: PushResult, key: str | None, actor: str) -> None:
    """Store the answer for the key and audit the push, in one transaction."""
    with session_scope(cfg.database_url) as s:
        if key is not None:
            row = s.get(IngestIdempotency, key)
            row.status, row.response, row.finished_at = "done", asdict(answer), utcnow()
        audit.record(
            s, action="ingest.pushed", actor=actor, target=f"ingestion_batch:{answer.batch_id}",
            to_value=answer.status, reason=f"pushed to {answer.source}",
            details={"rows_in": answer.rows_in, "rows_curated": answer.rows_curated,
                     "rows_duplicate": answer.rows_duplicate, "rows_quarantined": answer.rows_quarantined,
                     "idempotency_key": key},
        )  # fmt: skip


def push(cfg: ClmConfig, data: bytes, fmt: str, *, actor: str, key: str | None = None) -> tuple[PushResult, bool]:
    """Ingest one POST's body as one micro-batch (module docstring); ``(answer, replayed)``. Raises
    :class:`TooLarge`, :class:`NotReadable`, :class:`KeyConflict` or :class:`Busy`, having ingested nothing."""
    if fmt not in FORMATS:
        raise NotReadable(f"format {fmt!r} is not one of {', '.join(FORMATS)}")
    if key is not None and not KEY.match(key):
        raise NotReadable("Idempotency-Key must be 1 to 200 printable ASCII characters without spaces")
    _check_size(cfg, len(data))
    sha = hashlib.sha256(data).hexdigest()
    if key is not None and (replay := _stored(cfg, key, sha, actor)) is not None:
        return replay, True
    body, read_fmt = (json_lines(data), "jsonl") if fmt == "json" else (data, fmt)
    name = f"webhook:{key}" if key is not None else f"webhook:{uuid.uuid4().hex}"
    try:
        read = read_text(body, read_fmt, encoding=cfg.data.encoding, name=name)
    except IngestError as exc:  # a CSV header that repeats a column: no record can be told apart
        raise NotReadable(str(exc)) from None
    if read.table.num_rows > (limit := cfg.data.webhook.max_records):
        raise TooLarge(
            f"the body holds {read.table.num_rows} records, more than data.webhook.max_records ({limit}): "
            "nothing was ingested; send them in smaller POSTs"
        )
    batch_id = batch_id_for(hashlib.sha256(body).hexdigest(), name)
    try:
        with ingest_lock(cfg, f"push by {actor}", wait_seconds=cfg.data.webhook.lock_wait_s):
            if key is not None and (replay := _stored(cfg, key, sha, actor, claim_batch=batch_id)) is not None:
                return replay, True  # a twin POST finished while this one waited
            result = ingest_bytes(cfg, body, fmt=read_fmt, source=f"webhook:{actor}", name=name, actor=actor,
                                  source_format=fmt)  # fmt: skip
            answer = _answer(cfg, result, read, key)
            _finish(cfg, answer, key, actor)
    except DeployBusyError as exc:
        raise Busy(f"another push is being ingested: {exc}") from None
    except PushError:
        raise
    except ClmError as exc:  # a GX suite that cannot be loaded, a batch that kept crashing
        raise Failed(f"batch {batch_id} could not be ingested: {exc}") from None
    return answer, False
