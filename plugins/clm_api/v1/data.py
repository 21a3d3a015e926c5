"""Data ingestion and data versions: ``/clm/api/v1/ingestion/...``, ``/quarantine``, ``/data/tables/...``.

The same functions as the Data ingestion and Data versions screens: :mod:`clm_lib.reporting.ingestion` and
:mod:`clm_lib.reporting.data_versions`. Unknown batch, table or version: 404 naming it. A filter that cannot be
applied: 422 naming the field. A store that cannot be read: 503 naming it and since when. Quarantined records are
returned as data, as they arrived (text fields cut at 64 Ki characters, named in ``truncated``): escape them
wherever they are shown.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, HTTPException, Path, Query
from pydantic import BaseModel, ConfigDict

from clm_api.deps import READ, ConfigDep, Page, PageDep
from clm_lib.reporting import data_versions as versions
from clm_lib.reporting import ingestion

router = APIRouter(tags=["data"], dependencies=READ)

T = TypeVar("T")
MAX_VERSION = 2**31 - 1
"""Delta versions are 64-bit, but no table has two billion commits: a larger number is a 422, never an overflow."""
SourceKind = Literal["files", "feedback", "webhook", "kafka"]
BatchStatus = Literal["running", "committed", "failed", "gave_up"]
Table = Annotated[str, Path(max_length=64, description="A lake table: raw, curated, quarantine, replay or eval.")]
Version = Annotated[int, Path(ge=0, le=MAX_VERSION, description="A Delta version of the table.")]
Filter = Annotated[str | None, Query(max_length=200)]


def _answer(call: Callable[[], T]) -> T:
    """Run a reporting call: unknown things are 404s, bad filters 422s (``StoreDown`` is the app's 503)."""
    try:
        return call()
    except ingestion.NotFound as exc:
        raise HTTPException(404, str(exc)) from None
    except ingestion.BadFilter as exc:
        raise HTTPException(422, [{"loc": ["query", exc.field], "msg": str(exc), "type": "value_error"}]) from None


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


# --- ingestion --------------------------------------------------------------------------------------


class BatchOut(_Out):
    """One ingestion batch: one landing file, ingested once. ``rows_in = curated + quarantined + duplicate``."""

    id: str
    source: str
    kind: str
    """files, feedback, webhook or kafka."""
    source_format: str
    status: str
    """running, committed, failed or gave_up."""
    rows_in: int
    rows_curated: int
    rows_quarantined: int
    rows_duplicate: int
    reconciles: bool
    task_counts: dict[str, int]
    quarantine_reasons: dict[str, int]
    raw_version: int | None
    curated_version: int | None
    quarantine_version: int | None
    notes: list[str]
    error: str | None
    started_at: datetime | None
    finished_at: datetime | None


class SourceTotalsOut(_Out):
    kind: str
    batches: int
    statuses: dict[str, int]
    rows_in: int
    rows_curated: int
    rows_quarantined: int
    rows_duplicate: int
    reconciles: bool
    unreconciled: list[str]


class TaskCountsOut(_Out):
    task: str
    curated: int
    quarantined: int


class ReasonCountsOut(_Out):
    reason: str
    batches_say: int
    in_quarantine: int
    review_queue: int
    reconciles: bool


class ReconciliationOut(_Out):
    table: str
    batches_say: int
    table_holds: int | None
    ok: bool
    note: str


class HourOut(_Out):
    start: datetime
    batches: int
    rows_in: int
    rows_curated: int
    rows_quarantined: int
    rows_duplicate: int
    raw_bytes: int


class StoreProblemOut(BaseModel):
    store: str
    problem: str
    since: datetime


class SummaryOut(_Out):
    """What the Data ingestion screen's summary shows."""

    generated_at: datetime
    hours: int
    sources: list[SourceTotalsOut]
    tasks: list[TaskCountsOut]
    reasons: list[ReasonCountsOut]
    reconciliation: list[ReconciliationOut]
    hourly: list[HourOut]
    running: int
    problems: list[StoreProblemOut]
    """Stores that could not be read: their numbers are left out."""


class QuarantinedOut(_Out):
    """A quarantined record as it arrived: untrusted text."""

    batch_id: str
    source: str
    kind: str
    line: int
    reason: str
    detail: str
    id: str | None
    task: str | None
    prompt: str | None
    response: str | None
    metadata: str | None
    raw_text: str | None
    ingested_at: datetime | None
    truncated: list[str]
    review_status: str | None
    """For a correction waiting in (or decided by) the review queue: pending_review, accepted or rejected."""
    feedback_id: int | None


class QuarantinePageOut(Page[QuarantinedOut]):
    filters: dict[str, str]


@router.get("/ingestion/batches")
def batches(
    cfg: ConfigDep,
    page: PageDep,
    source: Annotated[SourceKind | None, Query(description="Where the batches came from.")] = None,
    status: Annotated[BatchStatus | None, Query()] = None,
    since: Annotated[datetime | None, Query(description="Started at or after (ISO 8601; UTC if no zone).")] = None,
) -> Page[BatchOut]:
    """Ingestion batches, newest first."""
    items, total = _answer(lambda: ingestion.list_batches(cfg, source=source, status=status, since=since,
                                                          offset=page.offset, limit=page.limit))  # fmt: skip
    return Page[BatchOut](items=[BatchOut.model_validate(b) for b in items], total=total, offset=page.offset,
                          limit=page.limit)  # fmt: skip


@router.get("/ingestion/batches/{batch_id}")
def batch(cfg: ConfigDep, batch_id: Annotated[str, Path(max_length=64)]) -> BatchOut:
    """One ingestion batch, with its notes (attempt log) and error."""
    return BatchOut.model_validate(_answer(lambda: ingestion.get_batch(cfg, batch_id)))


@router.get("/ingestion/summary")
def summary(
    cfg: ConfigDep, hours: Annotated[int, Query(ge=1, le=ingestion.MAX_HOURS, description="Hours charted.")] = 48
) -> SummaryOut:
    """Batches per source, curated and quarantined rows per task and per reason, what the tables hold against what
    the batches say, and rows and bytes per hour."""
    result = _answer(lambda: ingestion.ingestion_summary(cfg, hours=hours))
    return SummaryOut.model_validate(result.as_dict())


@router.get("/quarantine")
def quarantine(
    cfg: ConfigDep,
    page: PageDep,
    reason: Filter = None,
    task: Filter = None,
    batch: Annotated[str | None, Query(max_length=200, description="An ingestion batch id.")] = None,
    source: Annotated[SourceKind | None, Query()] = None,
) -> QuarantinePageOut:
    """Quarantined records, newest first, with their reason, source and batch."""
    result = _answer(lambda: ingestion.quarantine_records(cfg, reason=reason, task=task, batch=batch, source=source,
                                                          offset=page.offset, limit=page.limit))  # fmt: skip
    return QuarantinePageOut(items=[QuarantinedOut.model_validate(r) for r in result.items], total=result.total,
                             offset=result.offset, limit=result.limit, filters=result.filters)  # fmt: skip


# --- data versions ----------------------------------------------------------------------------------


class TableOut(_Out):
    name: str
    exists: bool
    version: int | None
    rows: int
    files: int
    size_bytes: int
    last_commit_at: datetime | None
    last_operation: str | None
    uri: str


class RunOut(_Out):
    """A training run that read a version, and how (``role``: the training_runs column naming it)."""

    id: str
    status: str
    role: str
    describe: str
    model_version: str | None
    started_at: datetime | None
    finished_at: datetime | None
    curated_version: int | None
    previous_curated_version: int | None
    replay_version: int | None


class CommitOut(_Out):
    version: int
    timestamp: datetime | None
    operation: str
    mode: str | None
    rows_added: int | None
    files_added: int | None
    files_removed: int | None
    batches: list[str]
    runs: list[RunOut]


class HistoryOut(Page[CommitOut]):
    table: str
    latest: int | None


class TaskDeltaOut(_Out):
    task: str
    added: int
    removed: int


class DiffOut(_Out):
    table: str
    from_version: int
    to_version: int
    added: int
    removed: int
    tasks: list[TaskDeltaOut]
    batches_added: dict[str, int]
    samples_added: list[dict[str, Any]]
    samples_removed: list[dict[str, Any]]
    files_read: int


@router.get("/data/tables")
def tables(cfg: ConfigDep) -> list[TableOut]:
    """Every lake table: latest version, rows, files, last commit."""
    return [TableOut.model_validate(t) for t in _answer(lambda: versions.list_tables(cfg))]


@router.get("/data/tables/{table}/history")
def history(cfg: ConfigDep, table: Table, page: PageDep) -> HistoryOut:
    """A table's Delta commits, newest first: operation, rows added, the batches behind it, the runs that read it."""
    h = _answer(lambda: versions.table_history(cfg, table, offset=page.offset, limit=page.limit))
    return HistoryOut(items=[CommitOut.model_validate(c.as_dict()) for c in h.commits], total=h.total,
                      offset=h.offset, limit=h.limit, table=h.table, latest=h.latest)  # fmt: skip


@router.get("/data/tables/{table}/diff")
def diff(
    cfg: ConfigDep,
    table: Table,
    from_version: Annotated[int, Query(alias="from", ge=0, le=MAX_VERSION, description="The older version.")],
    to_version: Annotated[int, Query(alias="to", ge=0, le=MAX_VERSION, description="The newer version.")],
    samples: Annotated[int, Query(ge=0, le=versions.MAX_SAMPLES, description="Sample records of each side.")] = 5,
) -> DiffOut:
    """Rows added and removed between two versions, per task and per batch, with sample records."""
    d = _answer(lambda: versions.diff_versions(cfg, table, from_version, to_version, samples=samples))
    return DiffOut.model_validate(d.as_dict())


@router.get("/data/tables/{table}/versions/{version}/runs")
def runs(cfg: ConfigDep, table: Table, version: Version) -> list[RunOut]:
    """Training runs that read this version (curated: as their data, or where their new rows start; replay: as
    their replay buffer)."""
    return [RunOut.model_validate(r.as_dict()) for r in _answer(lambda: versions.runs_reading(cfg, table, version))]
