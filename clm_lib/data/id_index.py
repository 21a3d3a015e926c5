"""The curated id index: which content ids ``curated`` holds, kept compact beside it, so dedupe reads neither
``curated``'s text nor its 64-character ids.

Dedupe used to read every curated id (hex text, ~70 bytes a row once decoded) for every batch. The index is a
Delta table ``<lake>/curated_index`` with one row per curated record: ``key``, the first 128 bits of its sha256
(16 bytes; two different records share a key with probability ~n²/2¹²⁹, about 10⁻²⁴ at ten billion records),
and ``bucket``, the key's first 4 bits, by which the table is partitioned. A batch reads only the buckets its
keys fall in (a micro-batch of a few records reads a few sixteenths of the index) and only the ``key`` column,
whose fixed-width values cost a fraction of text to read and compare (measured: docs/benchmarks.md,
"Ingestion"). A large batch touches every bucket, so its read is still proportional to the curated table, at
16 bytes a row; ingest starts it (:func:`read_ahead`) before the batch is hashed, in a thread beside the hashing.

The index is derived data, rebuilt from ``curated`` whenever it cannot be trusted:

- each index append is one Delta commit carrying the app transaction ``clm.curated_index`` = the curated version
  it brings the index up to (and the batch's own ``clm.ingest.<batch>``);
- before a batch dedupes, the index's version is compared with curated's latest. Equal, or only ``OPTIMIZE`` /
  ``VACUUM`` commits since (they do not change which rows are there): current. Anything else (a crash between
  the curated commit and the index commit, a restore, an overwrite, a table written by a clm from before the
  index, the index deleted) rebuilds it from curated in one pass, logged. So an existing lake needs no upgrade
  step: its first ingest builds the index.

Ingests do not run concurrently (see :mod:`clm_lib.data.ingest`), which is also what keeps the index and
``curated`` in step.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable
from concurrent.futures import Executor, Future
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from deltalake import ColumnProperties, CommitProperties, DeltaTable, Transaction, WriterProperties, write_deltalake

from clm_lib.config import ClmConfig
from clm_lib.data import lake
from clm_lib.data.records import KEY_BYTES, id_keys

log = logging.getLogger(__name__)

NAME = "curated_index"
APP_ID = "clm.curated_index"
"""App transaction whose version is the curated version the index reflects."""
BUCKET_BITS = 4
SCHEMA = pa.schema([pa.field("bucket", pa.int32(), nullable=False), pa.field("key", pa.binary(), nullable=False)])
WRITER = WriterProperties(
    compression="UNCOMPRESSED", column_properties={"key": ColumnProperties(dictionary_enabled=False,
                                                                          statistics_enabled="NONE")})
"""Keys are random bytes: compression, dictionaries and min/max statistics cost time and save nothing (1M keys:
0.16 s to write plain against 0.53 s with zstd and statistics, measured)."""
_ROWS_UNCHANGED = frozenset({"OPTIMIZE", "VACUUM START", "VACUUM END"})
_SCAN_ROWS = 4 << 20


def uri(cfg: ClmConfig) -> str:
    return f"{cfg.lake_uri.rstrip('/')}/{NAME}"


def _open(cfg: ClmConfig) -> DeltaTable | None:
    options = lake.storage_options(cfg)
    if not DeltaTable.is_deltatable(uri(cfg), storage_options=options):
        return None
    return DeltaTable(uri(cfg), storage_options=options)


def buckets(keys: pa.Array) -> pa.Array:
    """The partition of each key: its first :data:`BUCKET_BITS` bits."""
    first = np.frombuffer(keys.buffers()[1], np.uint8)[keys.offset * KEY_BYTES:][: len(keys) * KEY_BYTES: KEY_BYTES]
    return pa.array((first >> (8 - BUCKET_BITS)).astype(np.int32))


def _rows(keys: pa.Array) -> pa.Table:
    return pa.table([buckets(keys), keys.cast(pa.binary())], schema=SCHEMA)


def _write(cfg: ClmConfig, rows: pa.Table, mode: str, txns: list[Transaction], target: Any = None) -> None:
    write_deltalake(
        target if target is not None else uri(cfg),
        rows,
        mode=mode,
        partition_by=["bucket"],
        storage_options=lake.storage_options(cfg),
        commit_properties=CommitProperties(app_transactions=txns),
        writer_properties=WRITER,
    )


def _rows_unchanged(curated: DeltaTable, after: int, upto: int) -> bool:
    """Curated's commits ``after < version <= upto`` changed no row (compaction, vacuum)."""
    if upto <= after:
        return True
    commits = {c.get("version"): c.get("operation") for c in curated.history(limit=curated.version() - after)}
    return all(commits.get(v) in _ROWS_UNCHANGED for v in range(after + 1, upto + 1))


def _current(index: DeltaTable | None, curated: DeltaTable) -> bool:
    """The index lists exactly the ids of ``curated``'s latest version."""
    covered = None if index is None else index.transaction_version(APP_ID)
    return covered is not None and covered <= curated.version() and _rows_unchanged(curated, covered,
                                                                                     curated.version())


def rebuild(cfg: ClmConfig, curated: DeltaTable) -> DeltaTable:
    """Rewrite the index from ``curated`` (one read of its ``id`` column)."""
    ids = curated.to_pyarrow_dataset().to_table(columns=["id"])["id"]
    rows = _rows(id_keys(ids))
    _write(cfg, rows, "overwrite", [Transaction(APP_ID, curated.version())])
    log.info("curated index rebuilt from curated v%s: %d ids", curated.version(), rows.num_rows)
    return _open(cfg)


def current(cfg: ClmConfig) -> DeltaTable | None:
    """The index, brought up to date with curated first if it is not (None: there is no curated table)."""
    curated = lake._open(cfg, "curated")
    if curated is None:
        return None
    index = _open(cfg)
    if _current(index, curated):
        return index
    why = "missing" if index is None else f"at curated v{index.transaction_version(APP_ID)}"
    log.warning("curated index %s, curated is at v%s: rebuilding it", why, curated.version())
    return rebuild(cfg, curated)


AHEAD_ROWS = 256
"""A batch this large touches every bucket (the chance that one of 16 gets none of 256 random keys is ~10⁻⁶), so its
dedupe reads the whole index anyway: :func:`read_ahead` can start that read early."""


def read_ahead(cfg: ClmConfig, pool: Executor) -> Future[pa.Table] | None:
    """Start reading every key of the index (brought up to date first) in ``pool``, for :func:`seen`'s ``ahead``:
    ingest hashes the batch meanwhile. None when there is no curated table."""
    index = current(cfg)
    if index is None:
        return None
    # One call: the scan releases the GIL until it is done. Iterating batches would take the GIL back for each
    # file, and each time wait for the thread that is hashing to give it up.
    return pool.submit(index.to_pyarrow_dataset().to_table, columns=["key"])


def seen(
    cfg: ClmConfig, keys: pa.Array, *, exclude_batch: str | None = None, ahead: Future[pa.Table] | None = None
) -> pa.Array:
    """Per key: a record with that key is curated (rows of batch ``exclude_batch`` do not count). ``ahead``: the
    index's keys as :func:`read_ahead` reads them, started before ``keys`` were known (and nothing was curated
    since)."""
    if not len(keys):
        return pa.repeat(pa.scalar(False), 0)
    wanted = keys.cast(pa.binary())
    if ahead is not None:
        found = _probe(ahead.result()["key"].chunks, wanted)
    else:
        index = current(cfg)
        if index is None:
            return pa.repeat(pa.scalar(False), len(keys))
        touched = pc.unique(buckets(keys))
        scan = index.to_pyarrow_dataset().to_batches(columns=["key"], filter=pc.field("bucket").isin(touched))
        found = _probe((batch["key"] for batch in scan), wanted)
    present = pc.is_in(wanted, value_set=pa.concat_arrays(found)) if found else pa.repeat(pa.scalar(False), len(keys))
    if exclude_batch is not None and found:
        curated = lake._open(cfg, "curated")
        if curated.transaction_version(f"clm.ingest.{exclude_batch}") is not None:
            # The batch reached curated on an earlier attempt: its own rows are not duplicates of itself.
            own = lake.read_table(cfg, "curated", columns=["id"], where=pc.field("batch_id") == exclude_batch)["id"]
            if len(own):
                present = pc.and_(present, pc.invert(pc.is_in(wanted, value_set=id_keys(own).cast(pa.binary()))))
    return present


def _probe(index_keys: Iterable[pa.Array], wanted: pa.Array) -> list[pa.Array]:
    """The index keys that are among ``wanted``, looked up a few million index keys at a time: each is_in builds a
    hash set of ``wanted``, so calling it per (small) index file would cost more than the lookups themselves."""
    found: list[pa.Array] = []
    pending: list[pa.Array] = []
    held = 0
    for chunk in itertools.chain(index_keys, [None]):
        if chunk is not None:
            pending.append(chunk)
            held += len(chunk)
        if pending and (held >= _SCAN_ROWS or chunk is None):
            probed = pa.chunked_array(pending)  # not concatenated: that copied every index key read
            hit = probed.filter(pc.is_in(probed, value_set=wanted))
            if len(hit):
                found.append(hit.combine_chunks())
            pending, held = [], 0
    return found


def add(cfg: ClmConfig, keys: pa.Array, curated_version: int, batch_id: str) -> None:
    """Record ``keys``, the rows batch ``batch_id`` committed as ``curated_version``. When the index did not
    reflect the version before, nothing is written: the next batch rebuilds it (:func:`current`)."""
    index = _open(cfg)
    covered = None if index is None else index.transaction_version(APP_ID)
    if covered is not None and covered >= curated_version:
        return  # already recorded (a retried batch)
    if index is None:
        if curated_version != 0:
            return
    elif covered is None or not _rows_unchanged(lake._open(cfg, "curated"), covered, curated_version - 1):
        return
    txns = [Transaction(APP_ID, curated_version), Transaction(f"clm.ingest.{batch_id}", 1)]
    _write(cfg, _rows(keys), "append", txns, target=index)


def compact(cfg: ClmConfig) -> None:
    """Merge the index's small files (each batch appends up to 16) and drop the replaced ones after an hour: it is
    derived data, read only at its latest version. Run with curated's compaction (``clm_lake_maintenance``)."""
    index = _open(cfg)
    if index is None:
        return
    index.optimize.compact(writer_properties=WRITER)
    index.vacuum(retention_hours=1, dry_run=False, enforce_retention_duration=False)
