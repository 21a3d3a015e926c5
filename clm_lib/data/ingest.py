"""Ingest a landing file: read -> raw -> dedupe -> validate (GX) -> curated + quarantine -> clm DB.

Every record of a file ends in exactly one of three places, and the counts say so
(``rows_in == rows_curated + rows_quarantined + rows_duplicate``, checked before anything is recorded):

- ``curated``: new, valid records, normalised, with a content id and a stable train/eval split;
- ``quarantine``: records that could not be read cleanly or that the GX suite rejected, with the reason;
- duplicates: records already curated, or repeated earlier in the same file (counted, not stored again).

All lines also go to ``raw`` as they arrived. The batch id is derived from the file's sha256 and name.
**Re-ingesting a committed batch writes nothing**: it is skipped with a log line and reported with
``status="skipped"`` and zero counts. A batch that failed half-way is run again from the start; its
Delta appends carry the batch id as a Delta transaction id, so tables it already reached are not
written twice, and dedupe ignores the batch's own earlier rows, so its counts come out the same.

A landing file is opened once, without following links (:mod:`clm_lib.data.landing`), and hashed and read
from that descriptor. A file that must not be read (a link, a FIFO, over a ``data.max_*`` cap) becomes one
quarantine row describing it, never its content, and counts as one row in and one quarantined.

A batch left ``running`` was interrupted (the process was killed); the next run logs that in its notes and
retries it. After ``data.max_attempts`` crashed attempts the file is set aside in ``landing/failed/``, so one
file that kills the process every time cannot block every file after it. ``fault_point`` calls mark the steps
the crash tests kill (docs/reliability.md).

Ingests must not run concurrently (the DAG runs one at a time): two batches holding the same new
record at the same moment would both curate it.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from clm_lib import audit
from clm_lib.config import ClmConfig
from clm_lib.data import id_index, lake, landing_s3
from clm_lib.data.ingest_lock import ingest_lock
from clm_lib.data.landing import FileRefused, list_landing, move, open_untrusted, read_capped, subfolder, write_note
from clm_lib.data.prepare import prepare
from clm_lib.data.readers import EXTENSIONS, Limits, ReadResult, file_format, read_parquet, read_text
from clm_lib.data.records import FIELDS, KEY_BYTES, TIMESTAMP, key_splits
from clm_lib.db import session_scope
from clm_lib.db.models import IngestionBatch, ValidationResult, utcnow
from clm_lib.errors import ClmError, DeployBusyError, IngestError
from clm_lib.faults import fault_point
from clm_lib.validation import native
from clm_lib.validation.suite import SuiteResult, SuiteSpec, load_suite, validate

log = logging.getLogger(__name__)

PROCESSED = "processed"
FAILED = "failed"
LANDING_LOCK_WAIT_S = 600.0
"""How long a landed file waits for a push or a Kafka batch holding the ingest lock (each holds it for one batch)."""


@dataclass
class BatchResult:
    """What one file became. ``as_dict()`` is JSON-able (it travels in an Airflow Asset event)."""

    batch_id: str
    source: str
    source_format: str
    file_sha256: str
    status: str
    """``committed`` (also for a file quarantined as a whole: see ``refused``), ``skipped`` (this file was
    already ingested) or ``failed``."""
    rows_in: int = 0
    rows_curated: int = 0
    rows_quarantined: int = 0
    rows_duplicate: int = 0
    task_counts: dict[str, int] = field(default_factory=dict)
    """Curated rows per task."""
    quarantine_reasons: dict[str, int] = field(default_factory=dict)
    raw_version: int | None = None
    curated_version: int | None = None
    """Delta version of ``curated`` that holds this batch's rows (None: the table does not exist yet)."""
    quarantine_version: int | None = None
    validation_success: bool | None = None
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    refused: str | None = None
    """Why the file was quarantined as a whole instead of read (a link, a FIFO, over a cap); it goes to
    ``landing/failed/``."""
    seconds: float = 0.0
    stages: dict[str, float] = field(default_factory=dict)
    """Wall seconds of each step of the last attempt (read, raw commit, prepare: normalise, hash, check; dedupe ...)."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def batch_id_for(file_sha256: str, name: str) -> str:
    """Same bytes under the same name -> same batch, on any machine."""
    return hashlib.sha256(f"{file_sha256}:{name}".encode()).hexdigest()[:16]


def _first_occurrences(keys: pa.Array) -> pa.Array:
    """Per row: no earlier row of the batch has the same key (a hash aggregation, not a Python loop)."""
    n = len(keys)
    if keys.type == pa.binary(KEY_BYTES) and not keys.null_count:
        # Keys are digests: their first 8 bytes are distinct too unless a record repeats, and a set of integers is
        # ~1.6x quicker to build than a group-by of 16-byte values.
        words = KEY_BYTES // 8
        heads = np.frombuffer(keys.buffers()[1], np.uint64, count=words * n, offset=keys.offset * KEY_BYTES)[::words]
        if len(pc.unique(pa.array(heads))) == n:
            return pa.repeat(pa.scalar(True), n)
    first = pa.table({"k": keys, "i": pa.arange(0, n)}).group_by("k", use_threads=False).aggregate([("i", "min")])
    mask = np.zeros(n, dtype=bool)
    mask[first["i_min"].to_numpy()] = True
    return pa.array(mask)


def _with(table: pa.Table, **columns: Any) -> pa.Table:
    for name, values in columns.items():
        if not isinstance(values, pa.Array | pa.ChunkedArray):
            values = pa.repeat(pa.scalar(values, TIMESTAMP if isinstance(values, datetime) else pa.string()),
                               table.num_rows)
        table = table.append_column(name, values)
    return table


@dataclass
class _Split:
    """One batch, partitioned: every row of the file is in exactly one of the three outputs."""

    curated: pa.Table
    quarantine: pa.Table
    duplicates: int
    verdict: SuiteResult
    keys: pa.Array
    """The curated rows' keys in the id index (:mod:`clm_lib.data.id_index`), row for row."""
    seconds: dict[str, float] = field(default_factory=dict)
    """Wall time of each step (the ingest benchmark reports them)."""


def _new_records(
    cfg: ClmConfig, clean: pa.Table, batch_id: str, plan: native.Plan | None, pool: Executor,
    seconds: dict[str, float],
) -> tuple[pa.Array, int, pa.Table, pa.Array, list[pa.ChunkedArray] | None]:
    """Which rows of ``clean`` hold records neither curated before nor repeated earlier in this file, and how many;
    those records normalised, with their ids, their index keys, and the suite's findings on them (with a ``plan``)."""
    started = time.perf_counter()
    # The curated ids a large batch is checked against are read (in ``pool``) while it is hashed.
    ahead = id_index.read_ahead(cfg, pool) if clean.num_rows >= id_index.AHEAD_ROWS else None
    seconds["dedupe"] = time.perf_counter() - started
    started = time.perf_counter()
    prepared = prepare(clean, plan)
    seconds["prepare"] = time.perf_counter() - started
    started = time.perf_counter()
    keys = prepared.keys
    # Rows of this same batch are ignored so that a batch retried after a crash counts the same way.
    curated = id_index.seen(cfg, keys, exclude_batch=batch_id, ahead=ahead)
    new = pc.and_(_first_occurrences(keys), pc.invert(curated))
    kept = pc.sum(new).as_py() or 0
    seconds["dedupe"] += time.perf_counter() - started
    found = prepared.unexpected
    if found is not None:
        found = [_keep(f, new, kept) for f in found]
    return new, kept, _keep(prepared.records, new, kept), _keep(keys, new, kept), found


def _keep(rows: pa.Table | pa.Array, mask: pa.Array, kept: int) -> pa.Table | pa.Array:
    """``rows.filter(mask)`` (``kept`` rows), without the copy when that is every row (the usual case). A filter, not
    a take: taking from columns of many chunks (what the reader gives) concatenates them first, a copy of the text."""
    return rows if kept == len(rows) else rows.filter(mask)


def _plan(cfg: ClmConfig, suite: SuiteSpec) -> native.Plan | None:
    """The suite compiled for Arrow when it uses only the expectation types :mod:`clm_lib.validation.native` knows
    (GX's semantics, checked against GX in its tests); None (run by GX) otherwise, and always with
    ``data.gx_engine: gx``."""
    return native.plan(cfg, suite, ["id", *FIELDS]) if cfg.data.gx_engine == "arrow" else None


def _rejected(originals: pa.Table, ids: pa.Array, reasons: list[list[str]], verdict: SuiteResult) -> pa.Table:
    """Rows GX rejected, with the values as they arrived (not normalised) and every reason in words."""
    return (
        originals.drop_columns(["problem", "detail"])
        .append_column("problem", pa.array([r[0] for r in reasons], pa.string()))
        .append_column("detail", pa.array(["; ".join(verdict.details[c] for c in r) for r in reasons], pa.string()))
        .append_column("id", ids)
    )


def _partition(
    cfg: ClmConfig, read: ReadResult, batch_id: str, source: str, now: datetime, suite: SuiteSpec, pool: Executor
) -> _Split:
    seconds: dict[str, float] = {}
    rows = read.table
    if rows["problem"].null_count == rows.num_rows:  # every record read cleanly: no filtering copy
        broken, clean = rows.slice(0, 0), rows
    else:
        broken = rows.filter(pc.is_valid(rows["problem"]))
        clean = rows.filter(pc.is_null(rows["problem"]))
    plan = _plan(cfg, suite)
    new, kept, candidates, keys, found = _new_records(cfg, clean, batch_id, plan, pool, seconds)
    started = time.perf_counter()
    verdict = validate(candidates, cfg, suite) if plan is None else native.verdict(plan, candidates, found)
    seconds["validate"] = time.perf_counter() - started

    started = time.perf_counter()
    failing = np.zeros(candidates.num_rows, dtype=bool)
    failing[list(verdict.row_failures)] = True
    failed, passed = pa.array(failing), pa.array(~failing)
    good_rows = candidates.num_rows - verdict.failed
    originals = _keep(clean, new, kept)
    good, good_keys = _keep(candidates, passed, good_rows), _keep(keys, passed, good_rows)
    curated = _with(
        good,
        split=key_splits(good_keys, cfg.data.eval_fraction),
        source=source,
        batch_id=batch_id,
        line=_keep(originals["line"], passed, good_rows),
        ingested_at=now,
        metadata=_keep(originals["metadata"], passed, good_rows),
    )
    reasons = [verdict.row_failures[i] for i in sorted(verdict.row_failures)]
    rejected = _rejected(originals.filter(failed), candidates["id"].filter(failed), reasons, verdict)
    broken = broken.append_column("id", pa.nulls(broken.num_rows, pa.string()))
    quarantine = pa.concat_tables([broken, rejected.select(broken.column_names)]).sort_by("line")
    quarantine = _with(quarantine.rename_columns({"problem": "reason"}), source=source, batch_id=batch_id,
                       ingested_at=now)
    seconds["assemble"] = time.perf_counter() - started
    return _Split(curated, quarantine, clean.num_rows - candidates.num_rows, verdict, good_keys, seconds)


def _counts(values: pa.ChunkedArray | pa.Array) -> dict[str, int]:
    counted = pc.value_counts(values)
    return dict(sorted(zip(counted.field("values").to_pylist(), counted.field("counts").to_pylist(), strict=True)))


ATTEMPT = re.compile(r"^attempt (\d+) (started|failed|interrupted)\b")
GAVE_UP = "gave_up"
"""Batch status once clm stopped retrying a file that kept crashing (the file is in ``landing/failed/``)."""


def _attempts(history: list[str]) -> tuple[int, int]:
    """(attempts started, attempts that crashed) in a batch's attempt log."""
    found = [m.group(2) for m in map(ATTEMPT.match, history) if m]
    return found.count("started"), found.count("failed") + found.count("interrupted")


def _record_start(cfg: ClmConfig, batch_id: str, source: str, fmt: str, sha: str) -> IngestionBatch | None:
    """Mark the batch running; return the stored batch when it was already committed.

    Until it commits, the batch's ``notes`` are its attempt log. A batch found ``running`` was left so by a
    process that died (ingests never run concurrently); its attempt is logged as interrupted. Raises
    :class:`IngestError` once ``data.max_attempts`` attempts crashed, so the caller sets the file aside.
    """
    gave_up = None
    with session_scope(cfg.database_url) as s:
        stored = s.get(IngestionBatch, batch_id)
        if stored is not None and stored.status == "committed":
            return stored
        if stored is None:
            s.add(IngestionBatch(id=batch_id, source=source, source_format=fmt, file_sha256=sha, status="running",
                                 notes=[f"attempt 1 started at {utcnow():%Y-%m-%d %H:%M:%S}"]))
            return None
        # A file clm gave up on was moved to failed/; seeing it again means someone dropped it again on purpose.
        history = [] if stored.status == GAVE_UP else list(stored.notes or [])
        started, crashed = _attempts(history)
        started = started or int(stored.status != GAVE_UP)  # a batch written before attempts were logged
        if stored.status == "running":
            history.append(f"attempt {started} interrupted: the process ended before finishing it "
                           "(killed, out of memory?)")
            crashed += 1
        if crashed >= cfg.data.max_attempts:
            gave_up = f"ingestion crashed {crashed} times on this file (last: {history[-1]})"
            stored.status, stored.error, stored.finished_at, stored.notes = GAVE_UP, gave_up, utcnow(), history
            audit.record(s, action="ingest_gave_up", target=f"ingestion_batch:{batch_id}", reason=gave_up,
                         details={"source": source, "attempts": started})
        else:
            history.append(f"attempt {started + 1} started at {utcnow():%Y-%m-%d %H:%M:%S}")
            stored.status, stored.error, stored.started_at, stored.source = "running", None, utcnow(), source
            stored.notes = history
    if gave_up:
        raise IngestError(f"{source}: {gave_up}; set aside so that the files after it go on: fix the cause "
                          "and drop it again")
    return None


def _record_failure(cfg: ClmConfig, batch_id: str, error: str, *, final: bool) -> int:
    """Log the failed attempt; return how many attempts crashed. ``final``: the file is being set aside."""
    with session_scope(cfg.database_url) as s:
        stored = s.get(IngestionBatch, batch_id)
        history = list(stored.notes or [])
        started, crashed = _attempts(history)
        started = max(started, 1)
        history.append(f"attempt {started} failed: {error[:1000]}")
        crashed += 1
        final = final or crashed >= cfg.data.max_attempts
        stored.status, stored.error, stored.finished_at = GAVE_UP if final else "failed", error[:4000], utcnow()
        stored.notes = history
        if final:
            audit.record(s, action="ingest_gave_up", target=f"ingestion_batch:{batch_id}", reason=error[:1000],
                         details={"source": stored.source, "attempts": started})
    return crashed


def _record_commit(cfg: ClmConfig, result: BatchResult, verdict: SuiteResult | None, actor: str | None) -> None:
    """Commit the batch; ``verdict`` is None for a file quarantined as a whole (no record was validated)."""
    with session_scope(cfg.database_url) as s:
        stored = s.get(IngestionBatch, result.batch_id)
        crashed = [n for n in stored.notes or [] if (m := ATTEMPT.match(n)) and m.group(2) != "started"]
        if crashed:  # keep the attempt log, so a batch that needed a retry says so
            result.notes = [*crashed, *result.notes]
        for name in (
            "status", "rows_in", "rows_curated", "rows_quarantined", "rows_duplicate", "task_counts",
            "quarantine_reasons", "raw_version", "curated_version", "quarantine_version", "notes",
        ):
            setattr(stored, name, getattr(result, name))
        stored.error = result.refused
        stored.finished_at = utcnow()
        if verdict is not None:
            s.add(
                ValidationResult(
                    batch_id=result.batch_id,
                    suite=verdict.suite,
                    success=verdict.success,
                    evaluated=verdict.evaluated,
                    failed=verdict.failed,
                    expectations=verdict.expectations,
                )
            )
        audit.record(
            s,
            action="ingest_refused" if result.refused else "ingest_batch",
            actor=actor,
            target=f"ingestion_batch:{result.batch_id}",
            to_value=(f"quarantine v{result.quarantine_version}" if result.refused
                      else f"curated v{result.curated_version}"),
            reason=result.refused or f"ingested {result.source}",
            details={k: getattr(result, k) for k in ("rows_in", "rows_curated", "rows_quarantined", "rows_duplicate")},
        )


def ingest_file(cfg: ClmConfig, path: str | Path, *, actor: str | None = None) -> BatchResult:
    """Ingest one file (see the module docstring). A file that must not be read (a link, a FIFO, over a cap)
    is quarantined as a whole and comes back with ``refused`` set. Raises :class:`IngestError` when the file
    cannot be read at all, or kept crashing; a bad record never fails the batch."""
    started = time.monotonic()
    path = Path(path)
    fmt = file_format(path)
    if fmt is None or fmt not in cfg.data.formats:
        raise IngestError(f"{path}: {path.suffix or 'no extension'} files are not ingested "
                          f"(data.formats: {', '.join(cfg.data.formats)})")
    limits = Limits.of(cfg.data)
    try:
        with open_untrusted(path, cfg.data) as (fh, st):
            # Everything below reads the descriptor opened above, never the path again.
            if fmt == "parquet":
                sha = hashlib.file_digest(fh, "sha256").hexdigest()
                fh.seek(0)

                def read() -> ReadResult:
                    return read_parquet(fh, limits, path.name)
            else:
                content = read_capped(fh, path.name, cfg.data, st)
                sha = hashlib.sha256(content).hexdigest()

                def read() -> ReadResult:
                    return read_text(content, fmt, encoding=cfg.data.encoding, limits=limits, name=path.name)

            result = BatchResult(batch_id_for(sha, path.name), str(path), fmt, sha, status="running")
            return _run(cfg, path, result, read, actor, started)
    except FileRefused as refusal:  # before a byte was read: the batch is named after the directory entry
        result = BatchResult(batch_id_for(f"unread:{refusal.fingerprint}", path.name), str(path), fmt, "", "running")

        def refuse(refused: FileRefused = refusal) -> ReadResult:
            raise refused

        return _run(cfg, path, result, refuse, actor, started)


def ingest_bytes(
    cfg: ClmConfig,
    data: bytes,
    *,
    fmt: str,
    source: str,
    name: str,
    actor: str | None = None,
    source_format: str | None = None,
) -> BatchResult:
    """Ingest records that arrived as bytes, not as a landing file (``clm_lib/data/push.py``): ``fmt`` is ``jsonl``
    or ``csv``, read as a landing file of those bytes would be, through the same batch, Delta and database steps.
    The batch id comes from the bytes and ``name``, so the same bytes under the same name are one batch: ingested
    once, resumed after a crash, ``skipped`` when already committed."""
    started = time.monotonic()
    sha = hashlib.sha256(data).hexdigest()
    limits = Limits.of(cfg.data)

    def read() -> ReadResult:
        return read_text(data, fmt, encoding=cfg.data.encoding, limits=limits, name=name)

    result = BatchResult(batch_id_for(sha, name), source, source_format or fmt, sha, status="running")
    return _run(cfg, Path(name), result, read, actor, started)


def _run(cfg: ClmConfig, path: Path, result: BatchResult, read: Callable[[], ReadResult], actor: str | None,
         started: float) -> BatchResult:
    batch_id = result.batch_id
    previous = _record_start(cfg, batch_id, result.source, result.source_format, result.file_sha256)
    if previous is not None:
        note = (f"already ingested as batch {batch_id} at {previous.finished_at:%Y-%m-%d %H:%M:%S} "
                f"({previous.rows_curated} curated then); nothing written")
        log.info("%s: %s", path, note)
        result.status, result.notes, result.refused = "skipped", [note], previous.error
        result.raw_version = lake.table_version(cfg, "raw")
        result.curated_version = lake.table_version(cfg, "curated")
        result.quarantine_version = lake.table_version(cfg, "quarantine")
        return result
    try:
        _ingest(cfg, path, result, read, actor)
    except Exception as exc:
        error = str(exc) if isinstance(exc, IngestError) else f"{type(exc).__name__}: {exc}"
        crashed = _record_failure(cfg, batch_id, error, final=isinstance(exc, IngestError))
        log.error("%s: batch %s failed (attempt %d): %s", path, batch_id, crashed, error)
        if isinstance(exc, IngestError) or crashed < cfg.data.max_attempts:
            raise
        raise IngestError(f"{path}: ingestion failed {crashed} times on this file (last: {error}); set aside so "
                          "that the files after it go on: fix the cause and drop it again") from exc
    fault_point("ingest.after_db_commit")
    result.seconds = round(time.monotonic() - started, 3)
    log.info(
        "%s: batch %s committed in %.2fs: %d in, %d curated %s, %d quarantined %s, %d duplicate; "
        "raw v%s, curated v%s, quarantine v%s",
        path, batch_id, result.seconds, result.rows_in, result.rows_curated, result.task_counts,
        result.rows_quarantined, result.quarantine_reasons, result.rows_duplicate,
        result.raw_version, result.curated_version, result.quarantine_version,
    )
    return result


def _txn(batch_id: str) -> dict[str, Any]:
    return {"app_id": f"clm.ingest.{batch_id}", "txn_version": 1}


def _ingest(cfg: ClmConfig, path: Path, result: BatchResult, reader: Callable[[], ReadResult],
            actor: str | None) -> None:
    stages = result.stages
    suite = load_suite(cfg)  # a broken suite must stop the batch before anything is written
    fault_point("ingest.after_start")
    started = time.perf_counter()
    try:
        read = reader()
    except FileRefused as refusal:
        _refuse(cfg, result, refusal, actor)
        return
    stages["read"] = time.perf_counter() - started
    for note in read.notes:
        log.info("%s: %s", path, note)
    now = datetime.now(UTC)
    batch_id, source = result.batch_id, result.source
    txn = _txn(batch_id)

    raw = _with(read.table.drop_columns(["problem", "detail"]), batch_id=batch_id, source=source, ingested_at=now)

    def write_raw() -> int | None:
        began = time.perf_counter()
        version = lake.append(cfg, "raw", raw, **txn) if raw.num_rows else lake.table_version(cfg, "raw")
        stages["raw_commit"] = time.perf_counter() - began
        return version

    # The raw commit (Rust, without the GIL) runs beside hashing, dedupe and validation (Python and Arrow): on two
    # cores that hides most of it. Nothing below reads raw, and curated is written only after raw is committed.
    # The pool's second thread reads the curated id index meanwhile.
    with ThreadPoolExecutor(2, thread_name_prefix="clm-ingest") as pool:
        raw_commit = pool.submit(write_raw)
        started = time.perf_counter()
        try:
            part = _partition(cfg, read, batch_id, source, now, suite, pool)
        finally:
            result.raw_version = raw_commit.result()  # waits, and raises the raw commit's error first
        stages.update(part.seconds)
        stages["overlapped"] = time.perf_counter() - started
    fault_point("ingest.after_raw_commit")

    result.rows_in = read.table.num_rows
    result.rows_curated = part.curated.num_rows
    result.rows_quarantined = part.quarantine.num_rows
    result.rows_duplicate = part.duplicates
    if result.rows_in != result.rows_curated + result.rows_quarantined + result.rows_duplicate:
        raise RuntimeError(
            f"{path}: counts do not reconcile ({result.rows_in} in != {result.rows_curated} curated + "
            f"{result.rows_quarantined} quarantined + {result.rows_duplicate} duplicate); nothing committed"
        )
    result.task_counts = _counts(part.curated["task"])
    result.quarantine_reasons = _counts(part.quarantine["reason"])
    result.validation_success = part.verdict.success
    result.notes = list(read.notes)

    def write(name: str, table: pa.Table) -> int | None:
        began = time.perf_counter()
        version = lake.append(cfg, name, table, **txn) if table.num_rows else lake.table_version(cfg, name)
        stages[f"{name}_commit"] = time.perf_counter() - began
        return version

    result.curated_version = write("curated", part.curated)
    fault_point("ingest.after_curated_commit")
    if part.curated.num_rows:
        began = time.perf_counter()
        id_index.add(cfg, part.keys, result.curated_version, batch_id)
        stages["index_commit"] = time.perf_counter() - began
    result.quarantine_version = write("quarantine", part.quarantine)
    fault_point("ingest.after_quarantine_commit")
    result.status = "committed"
    began = time.perf_counter()
    _record_commit(cfg, result, part.verdict, actor)
    stages["database"] = time.perf_counter() - began
    result.stages = {k: round(v, 4) for k, v in stages.items()}


def _refuse(cfg: ClmConfig, result: BatchResult, refusal: FileRefused, actor: str | None) -> None:
    """Quarantine the file as a whole: one row naming it and why, none of its content; it counts as one row in."""
    row = pa.table({
        "reason": pa.array([str(refusal.reason)], pa.string()),
        "detail": pa.array([refusal.detail], pa.string()),
        "source": pa.array([result.source], pa.string()),
        "line": pa.array([0], pa.int64()),
        "batch_id": pa.array([result.batch_id], pa.string()),
        "ingested_at": pa.array([datetime.now(UTC)], TIMESTAMP),
    })
    result.quarantine_version = lake.append(cfg, "quarantine", row, **_txn(result.batch_id))
    fault_point("ingest.after_quarantine_commit")
    result.raw_version = lake.table_version(cfg, "raw")
    result.curated_version = lake.table_version(cfg, "curated")
    result.rows_in = result.rows_quarantined = 1
    result.quarantine_reasons = {str(refusal.reason): 1}
    result.refused = refusal.detail
    result.notes = [f"quarantined as a whole: {refusal.detail}"]
    result.status = "committed"
    log.warning("%s: refused: %s", result.source, refusal.detail)
    _record_commit(cfg, result, None, actor)


def _set_aside(landing: Path, path: Path, error: str, tag: str) -> Path:
    """Move ``path`` to ``landing/failed/`` with ``<name>.error.txt`` beside it saying why."""
    moved = move(path, subfolder(landing, FAILED), tag)
    write_note(moved.with_name(moved.name + ".error.txt"), f"{error}\n")
    log.error("%s: not ingested, moved to %s: %s", path, moved, error)
    return moved


def _landing_files(cfg: ClmConfig) -> list[Path]:
    landing = cfg.landing_dir
    try:
        found = list_landing(landing, list(cfg.data.formats), EXTENSIONS)
    except FileNotFoundError:
        raise IngestError(f"landing folder {landing} does not exist (set paths.landing or create it)") from None
    except NotADirectoryError:
        raise IngestError(f"landing folder {landing} is not a folder") from None
    except OSError as exc:
        raise IngestError(f"landing folder {landing} cannot be read: {exc.strerror or exc}") from None
    for path, regular in found:
        if not regular:
            log.warning("landing: %s is not a regular file: it will be quarantined as a whole, not read", path.name)
    return [p for p, _ in found]


def _ingest_object(cfg: ClmConfig, place: landing_s3.S3Landing, obj: landing_s3.LandingObject,
                   actor: str | None) -> BatchResult:
    """Ingest one object of an ``s3://`` landing place: as :func:`ingest_file` does a file, from one read of
    the listed version (:mod:`clm_lib.data.landing_s3`). Raises :class:`landing_s3.Changed` when it changed."""
    started = time.monotonic()
    path = Path(obj.name)
    fmt = file_format(path)
    source = place.uri(obj.key)
    limits = Limits.of(cfg.data)
    try:
        place.check(obj, cfg.data)
        content = place.read(obj, cfg.data)
    except FileRefused as refusal:  # nothing (or not all) was read: the batch is named after the listed version
        result = BatchResult(batch_id_for(f"unread:s3:{obj.etag}:{obj.size}", obj.name), source, fmt or "", "",
                             "running")

        def refuse(refused: FileRefused = refusal) -> ReadResult:
            raise refused

        return _run(cfg, path, result, refuse, actor, started)
    sha = hashlib.sha256(content).hexdigest()

    def read() -> ReadResult:
        if fmt == "parquet":
            return read_parquet(io.BytesIO(content), limits, obj.name)
        return read_text(content, fmt, encoding=cfg.data.encoding, limits=limits, name=obj.name)

    result = BatchResult(batch_id_for(sha, obj.name), source, fmt, sha, status="running")
    return _run(cfg, path, result, read, actor, started)


def _ingest_remote_landing(cfg: ClmConfig, actor: str | None) -> list[BatchResult]:
    """:func:`ingest_landing` for an ``s3://`` landing place: the same outcomes, objects instead of files."""
    place = landing_s3.S3Landing(cfg.landing_uri)
    objects = place.list(list(cfg.data.formats), EXTENSIONS)
    log.info("landing %s: %d object(s) to ingest", place.location, len(objects))
    results = []
    for obj in objects:
        try:
            with _locked(cfg, place.uri(obj.key)):
                result = _ingest_object(cfg, place, obj, actor)
        except landing_s3.Changed as exc:
            log.warning("%s: %s", place.uri(obj.key), exc)
            continue
        except IngestError as exc:
            try:
                moved = place.move(obj, FAILED, datetime.now(UTC).strftime("%Y%m%dT%H%M%S"))
            except landing_s3.Changed as changed:
                log.warning("%s: %s", place.uri(obj.key), changed)
                continue
            place.write_note(moved + ".error.txt", f"{exc}\n")
            log.error("%s: not ingested, moved to %s: %s", place.uri(obj.key), moved, exc)
            results.append(BatchResult("", place.uri(obj.key), file_format(Path(obj.name)) or "", "", "failed",
                                       error=str(exc)))
            continue
        try:
            if result.refused:
                moved = place.move(obj, FAILED, result.batch_id)
                place.write_note(moved + ".error.txt", f"{result.refused}\n")
            else:
                log.info("%s: moved to %s", result.source, place.move(obj, PROCESSED, result.batch_id))
        except landing_s3.Changed as changed:  # ingested; a newer version arrived meanwhile and stays
            log.warning("%s: %s", place.uri(obj.key), changed)
        fault_point("ingest.after_move")
        results.append(result)
    return results


@contextmanager
def _locked(cfg: ClmConfig, what: str) -> Iterator[None]:
    """The ingest lock around one landed file (clm_lib/data/ingest_lock.py); busy stops the run, the file stays."""
    try:
        with ingest_lock(cfg, f"landing {what}"[:200], wait_seconds=LANDING_LOCK_WAIT_S):
            yield
    except DeployBusyError as exc:
        raise ClmError(
            f"{what}: another ingestion held the ingest lock for {LANDING_LOCK_WAIT_S:.0f} s ({exc}); "
            "it stays in the landing place for the next run"
        ) from None


def ingest_landing(cfg: ClmConfig, *, actor: str | None = None) -> list[BatchResult]:
    """Ingest every file in the landing folder, oldest first.

    Each ingested (or already ingested) file moves to ``landing/processed/``. A file that cannot be read
    at all, was refused (a link, a FIFO, over a size cap: quarantined as a whole), or crashed ingestion
    ``data.max_attempts`` times moves to ``landing/failed/`` with ``<name>.error.txt`` beside it saying why,
    and the other files go on. An ``s3://`` landing place works the same way (:mod:`clm_lib.data.landing_s3`);
    an object replaced while it was read is left for the next run. Any other error (lake or database
    unreachable) stops the run and leaves the file in place, so a retry picks it up. Raises
    :class:`IngestError` when the folder itself is missing or unreadable.
    """
    if landing_s3.is_remote(cfg.paths.landing):
        return _ingest_remote_landing(cfg, actor)
    landing = cfg.landing_dir
    results = []
    files = _landing_files(cfg)
    log.info("landing %s: %d file(s) to ingest", landing, len(files))
    for path in files:
        try:
            with _locked(cfg, str(path)):
                result = ingest_file(cfg, path, actor=actor)
        except IngestError as exc:
            if not os.path.lexists(path):  # taken away while we listed the folder: nothing to move
                log.warning("%s: vanished before it could be ingested (%s)", path, exc)
                continue
            _set_aside(landing, path, str(exc), datetime.now(UTC).strftime("%Y%m%dT%H%M%S"))
            results.append(BatchResult("", str(path), file_format(path) or "", "", "failed", error=str(exc)))
            continue
        if result.refused:
            _set_aside(landing, path, result.refused, result.batch_id)
        else:
            log.info("%s: moved to %s", path, move(path, subfolder(landing, PROCESSED), result.batch_id))
        fault_point("ingest.after_move")
        results.append(result)
    return results


def curated_rows_since(
    cfg: ClmConfig, version: int | None, *, until: int | None = None, split: str | None = None
) -> pa.Table:
    """Curated rows at ``until`` (latest when None) whose id was not in curated at ``version``.

    ``version=None`` means "from the beginning". Pass ``until`` to make the answer reproducible;
    ``split`` keeps only ``"train"`` or ``"eval"`` rows.
    """
    where = pc.field("split") == split if split else None
    now = lake.read_table(cfg, "curated", version=until, where=where)
    if version is None or not now.num_rows:
        return now
    before = lake.read_table(cfg, "curated", version=version, columns=["id"])["id"]
    return now.filter(pc.invert(pc.is_in(now["id"], value_set=before.combine_chunks())))


def held_out(cfg: ClmConfig, tasks: list[str] | None = None, *, version: int | None = None) -> pa.Table:
    """The eval split of curated (optionally only ``tasks``), sorted by task then id so subsets are stable."""
    where = pc.field("split") == "eval"
    if tasks:
        where = where & pc.field("task").isin(list(tasks))
    return lake.read_table(cfg, "curated", version=version, where=where).sort_by([("task", "ascending"),
                                                                                  ("id", "ascending")])
