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

Ingests must not run concurrently (the DAG runs one at a time): two batches holding the same new
record at the same moment would both curate it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from clm_lib import audit
from clm_lib.config import ClmConfig
from clm_lib.data import lake
from clm_lib.data.readers import ReadResult, file_format, read_file
from clm_lib.data.records import FIELDS, TIMESTAMP, content_ids, normalise, splits
from clm_lib.db import session_scope
from clm_lib.db.models import IngestionBatch, ValidationResult, utcnow
from clm_lib.errors import IngestError
from clm_lib.validation.suite import SuiteResult, SuiteSpec, load_suite, validate

log = logging.getLogger(__name__)

PROCESSED = "processed"
FAILED = "failed"


@dataclass
class BatchResult:
    """What one file became. ``as_dict()`` is JSON-able (it travels in an Airflow Asset event)."""

    batch_id: str
    source: str
    source_format: str
    file_sha256: str
    status: str
    """``committed``, ``skipped`` (this file was already ingested) or ``failed``."""
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
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _file_sha256(path: Path) -> str:
    try:
        with path.open("rb") as fh:
            return hashlib.file_digest(fh, "sha256").hexdigest()
    except OSError as exc:
        raise IngestError(f"cannot read {path}: {exc.strerror or exc}") from None


def batch_id_for(file_sha256: str, name: str) -> str:
    """Same bytes under the same name -> same batch, on any machine."""
    return hashlib.sha256(f"{file_sha256}:{name}".encode()).hexdigest()[:16]


def _first_occurrences(ids: pa.Array) -> pa.Array:
    seen: set[str] = set()
    keep = []
    for i in ids.to_pylist():
        keep.append(i not in seen)
        seen.add(i)
    return pa.array(keep, pa.bool_())


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


def _new_records(cfg: ClmConfig, clean: pa.Table, batch_id: str) -> tuple[pa.Array, pa.Table]:
    """Positions in ``clean`` of records neither curated before nor repeated earlier in this file, and
    those records normalised, with their ids."""
    normal = {f: normalise(clean[f].combine_chunks()) for f in FIELDS}
    ids = content_ids(normal["task"], normal["prompt"], normal["response"])
    # Rows of this same batch are ignored so that a batch retried after a crash counts the same way.
    curated = lake.read_table(cfg, "curated", columns=["id"], where=pc.field("batch_id") != batch_id)["id"]
    new = pc.and_(_first_occurrences(ids), pc.invert(pc.is_in(ids, value_set=curated.combine_chunks())))
    positions = pc.indices_nonzero(new)
    return positions, pa.table({"id": ids, **normal}).take(positions)


def _rejected(originals: pa.Table, ids: pa.Array, reasons: list[list[str]], verdict: SuiteResult) -> pa.Table:
    """Rows GX rejected, with the values as they arrived (not normalised) and every reason in words."""
    return (
        originals.drop_columns(["problem", "detail"])
        .append_column("problem", pa.array([r[0] for r in reasons], pa.string()))
        .append_column("detail", pa.array(["; ".join(verdict.details[c] for c in r) for r in reasons], pa.string()))
        .append_column("id", ids)
    )


def _partition(
    cfg: ClmConfig, read: ReadResult, batch_id: str, source: str, now: datetime, suite: SuiteSpec
) -> _Split:
    rows = read.table
    broken = rows.filter(pc.is_valid(rows["problem"]))
    clean = rows.filter(pc.is_null(rows["problem"]))
    positions, candidates = _new_records(cfg, clean, batch_id)
    verdict = validate(candidates, cfg, suite)

    failed = pa.array(sorted(verdict.row_failures), pa.uint64())
    passed = pa.array([i for i in range(candidates.num_rows) if i not in verdict.row_failures], pa.uint64())
    originals = clean.take(positions)
    good = candidates.take(passed)
    curated = _with(
        good,
        split=splits(good["id"].combine_chunks(), cfg.data.eval_fraction),
        source=source,
        batch_id=batch_id,
        line=originals["line"].take(passed),
        ingested_at=now,
        metadata=originals["metadata"].take(passed),
    )
    reasons = [verdict.row_failures[i] for i in failed.to_pylist()]
    rejected = _rejected(originals.take(failed), candidates["id"].take(failed), reasons, verdict)
    broken = broken.append_column("id", pa.nulls(broken.num_rows, pa.string()))
    quarantine = pa.concat_tables([broken, rejected.select(broken.column_names)]).sort_by("line")
    quarantine = _with(quarantine.rename_columns({"problem": "reason"}), source=source, batch_id=batch_id,
                       ingested_at=now)
    return _Split(curated, quarantine, clean.num_rows - candidates.num_rows, verdict)


def _counts(values: pa.ChunkedArray | pa.Array) -> dict[str, int]:
    return dict(sorted(Counter(values.to_pylist()).items()))


def _record_start(cfg: ClmConfig, batch_id: str, source: str, fmt: str, sha: str) -> IngestionBatch | None:
    """Mark the batch running; return the stored batch when it was already committed."""
    with session_scope(cfg.database_url) as s:
        stored = s.get(IngestionBatch, batch_id)
        if stored is not None and stored.status == "committed":
            return stored
        if stored is None:
            s.add(IngestionBatch(id=batch_id, source=source, source_format=fmt, file_sha256=sha, status="running"))
        else:
            stored.status, stored.error, stored.started_at, stored.source = "running", None, utcnow(), source
    return None


def _record_failure(cfg: ClmConfig, batch_id: str, error: str) -> None:
    with session_scope(cfg.database_url) as s:
        stored = s.get(IngestionBatch, batch_id)
        stored.status, stored.error, stored.finished_at = "failed", error[:4000], utcnow()


def _record_commit(cfg: ClmConfig, result: BatchResult, verdict: SuiteResult, actor: str | None) -> None:
    with session_scope(cfg.database_url) as s:
        stored = s.get(IngestionBatch, result.batch_id)
        for name in (
            "status", "rows_in", "rows_curated", "rows_quarantined", "rows_duplicate", "task_counts",
            "quarantine_reasons", "raw_version", "curated_version", "quarantine_version", "notes",
        ):
            setattr(stored, name, getattr(result, name))
        stored.finished_at = utcnow()
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
            action="ingest_batch",
            actor=actor,
            target=f"ingestion_batch:{result.batch_id}",
            to_value=f"curated v{result.curated_version}",
            reason=f"ingested {result.source}",
            details={k: getattr(result, k) for k in ("rows_in", "rows_curated", "rows_quarantined", "rows_duplicate")},
        )


def ingest_file(cfg: ClmConfig, path: str | Path, *, actor: str | None = None) -> BatchResult:
    """Ingest one file (see the module docstring). Raises :class:`IngestError` when the file as a whole
    cannot be read; a bad record never fails the batch."""
    started = time.monotonic()
    path = Path(path)
    fmt = file_format(path)
    if fmt is None or fmt not in cfg.data.formats:
        raise IngestError(f"{path}: {path.suffix or 'no extension'} files are not ingested "
                          f"(data.formats: {', '.join(cfg.data.formats)})")
    sha = _file_sha256(path)
    batch_id, source = batch_id_for(sha, path.name), str(path)
    result = BatchResult(batch_id, source, fmt, sha, status="running")
    previous = _record_start(cfg, batch_id, source, fmt, sha)
    if previous is not None:
        note = (f"already ingested as batch {batch_id} at {previous.finished_at:%Y-%m-%d %H:%M:%S} "
                f"({previous.rows_curated} curated then); nothing written")
        log.info("%s: %s", path, note)
        result.status, result.notes = "skipped", [note]
        result.raw_version = lake.table_version(cfg, "raw")
        result.curated_version = lake.table_version(cfg, "curated")
        result.quarantine_version = lake.table_version(cfg, "quarantine")
        return result
    try:
        _ingest(cfg, path, result, actor)
    except Exception as exc:
        _record_failure(cfg, batch_id, str(exc))
        log.error("%s: batch %s failed: %s", path, batch_id, exc)
        raise
    result.seconds = round(time.monotonic() - started, 3)
    log.info(
        "%s: batch %s committed in %.2fs: %d in, %d curated %s, %d quarantined %s, %d duplicate; "
        "raw v%s, curated v%s, quarantine v%s",
        path, batch_id, result.seconds, result.rows_in, result.rows_curated, result.task_counts,
        result.rows_quarantined, result.quarantine_reasons, result.rows_duplicate,
        result.raw_version, result.curated_version, result.quarantine_version,
    )
    return result


def _ingest(cfg: ClmConfig, path: Path, result: BatchResult, actor: str | None) -> None:
    suite = load_suite(cfg)  # a broken suite must stop the batch before anything is written
    read = read_file(path)
    for note in read.notes:
        log.info("%s: %s", path, note)
    now = datetime.now(UTC)
    batch_id, source = result.batch_id, result.source
    txn = {"app_id": f"clm.ingest.{batch_id}", "txn_version": 1}

    raw = _with(read.table.drop_columns(["problem", "detail"]), batch_id=batch_id, source=source, ingested_at=now)
    result.raw_version = lake.append(cfg, "raw", raw, **txn) if raw.num_rows else lake.table_version(cfg, "raw")

    part = _partition(cfg, read, batch_id, source, now, suite)
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
        return lake.append(cfg, name, table, **txn) if table.num_rows else lake.table_version(cfg, name)

    result.curated_version = write("curated", part.curated)
    result.quarantine_version = write("quarantine", part.quarantine)
    result.status = "committed"
    _record_commit(cfg, result, part.verdict, actor)


def _move(path: Path, folder: Path, tag: str) -> Path:
    folder.mkdir(exist_ok=True)
    target = folder / path.name
    if target.exists():  # the same name arrived again with other bytes: keep both
        target = folder / f"{path.stem}.{tag}{path.suffix}"
    shutil.move(path, target)
    return target


def _landing_files(cfg: ClmConfig) -> list[Path]:
    landing = cfg.landing_dir
    try:
        entries = list(os.scandir(landing))
    except FileNotFoundError:
        raise IngestError(f"landing folder {landing} does not exist (set paths.landing or create it)") from None
    except NotADirectoryError:
        raise IngestError(f"landing folder {landing} is not a folder") from None
    except OSError as exc:
        raise IngestError(f"landing folder {landing} cannot be read: {exc.strerror or exc}") from None
    files = []
    for entry in entries:
        # Writers should land files under a temporary name (".x.jsonl", "x.jsonl.part") and rename.
        if entry.name.startswith(".") or not entry.is_file():
            continue
        fmt = file_format(Path(entry.path))
        if fmt in cfg.data.formats:
            files.append((entry.stat().st_mtime, entry.name, Path(entry.path)))
        else:
            log.info("landing: leaving %s alone (not one of data.formats: %s)", entry.name, cfg.data.formats)
    return [p for *_, p in sorted(files)]


def ingest_landing(cfg: ClmConfig, *, actor: str | None = None) -> list[BatchResult]:
    """Ingest every file in the landing folder, oldest first.

    Each ingested (or already ingested) file moves to ``landing/processed/``. A file that cannot be
    read at all moves to ``landing/failed/`` with ``<name>.error.txt`` beside it saying why, and the
    other files go on. Any other error (lake or database unreachable) stops the run and leaves the
    file in place, so a retry picks it up. Raises :class:`IngestError` when the folder itself is missing
    or unreadable.
    """
    landing = cfg.landing_dir
    results = []
    files = _landing_files(cfg)
    log.info("landing %s: %d file(s) to ingest", landing, len(files))
    for path in files:
        try:
            result = ingest_file(cfg, path, actor=actor)
        except IngestError as exc:
            if not path.exists():  # taken away while we listed the folder: nothing to move
                log.warning("%s: vanished before it could be ingested (%s)", path, exc)
                continue
            try:
                sha = _file_sha256(path)
            except IngestError:
                sha = ""
            batch_id = batch_id_for(sha, path.name) if sha else ""
            moved = _move(path, landing / FAILED, batch_id or datetime.now(UTC).strftime("%Y%m%dT%H%M%S"))
            moved.with_name(moved.name + ".error.txt").write_text(f"{exc}\n", encoding="utf-8")
            log.error("%s: not ingested, moved to %s: %s", path, moved, exc)
            results.append(BatchResult(batch_id, str(path), file_format(path) or "", sha, "failed", error=str(exc)))
            continue
        moved = _move(path, landing / PROCESSED, result.batch_id)
        log.info("%s: moved to %s", path, moved)
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
