"""Data ingestion and data versions: ``/clm/api/v1/ingestion/...``, ``/quarantine``, ``/data/tables/...``.

The same functions as the Data ingestion and Data versions screens (:mod:`clm_lib.reporting.ingestion`,
:mod:`~clm_lib.reporting.quarantine` and :mod:`~clm_lib.reporting.data_versions`), whose dataclasses are the
response models. Unknown batch, table or version: 404 naming it. A filter that cannot be applied: 422 naming the
field. A store that cannot be read: 503 naming it and since when. Quarantined records are returned as data, as
they arrived (text fields cut at 64 Ki characters, named in ``truncated``): escape them wherever they are shown.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from clm_api.deps import READ, ActorDep, ConfigDep, Page, PageDep, operate
from clm_api.v1.answers import answer
from clm_lib.data import versions as lake_versions
from clm_lib.data.versions import Restored, UnknownVersion
from clm_lib.errors import ClmError
from clm_lib.reporting import data_versions as versions
from clm_lib.reporting import ingestion
from clm_lib.reporting.data_versions import Commit, Diff, RunRef, TableInfo
from clm_lib.reporting.ingestion import Batch, IngestionSummary
from clm_lib.reporting.quarantine import QuarantinePage, quarantine_records
from clm_lib.reporting.reads import lake_failed

router = APIRouter(tags=["data"], dependencies=READ)

MAX_VERSION = 2**31 - 1
"""Delta versions are 64-bit, but no table has two billion commits: a larger number is a 422, never an overflow."""
SourceKind = Literal["files", "feedback", "webhook", "kafka"]
BatchStatus = Literal["running", "committed", "failed", "gave_up"]
Table = Annotated[str, Path(max_length=64, description="A lake table: raw, curated, quarantine, replay or eval.")]
Version = Annotated[int, Path(ge=0, le=MAX_VERSION, description="A Delta version of the table.")]
Filter = Annotated[str | None, Query(max_length=200)]


class HistoryOut(Page[Commit]):
    """A table's history as a page like every other list here (``items``); the screen's
    :class:`~clm_lib.reporting.data_versions.History` calls them ``commits``."""

    table: str
    latest: int | None


@router.get("/ingestion/batches")
def batches(
    cfg: ConfigDep,
    page: PageDep,
    source: Annotated[SourceKind | None, Query(description="Where the batches came from.")] = None,
    status: Annotated[BatchStatus | None, Query()] = None,
    since: Annotated[datetime | None, Query(description="Started at or after (ISO 8601; UTC if no zone).")] = None,
) -> Page[Batch]:
    """Ingestion batches, newest first."""
    items, total = answer(lambda: ingestion.list_batches(cfg, source=source, status=status, since=since,
                                                         offset=page.offset, limit=page.limit))  # fmt: skip
    return Page[Batch](items=items, total=total, offset=page.offset, limit=page.limit)


@router.get("/ingestion/batches/{batch_id}")
def batch(cfg: ConfigDep, batch_id: Annotated[str, Path(max_length=64)]) -> Batch:
    """One ingestion batch, with its notes (attempt log) and error."""
    return answer(lambda: ingestion.get_batch(cfg, batch_id))


@router.get("/ingestion/summary")
def summary(
    cfg: ConfigDep, hours: Annotated[int, Query(ge=1, le=ingestion.MAX_HOURS, description="Hours charted.")] = 48
) -> IngestionSummary:
    """Batches per source, curated and quarantined rows per task and per reason, what the tables hold against what
    the batches say, and rows and bytes per hour."""
    return answer(lambda: ingestion.ingestion_summary(cfg, hours=hours))


@router.get("/quarantine")
def quarantine(
    cfg: ConfigDep,
    page: PageDep,
    reason: Filter = None,
    task: Filter = None,
    batch: Annotated[str | None, Query(max_length=200, description="An ingestion batch id.")] = None,
    source: Annotated[SourceKind | None, Query()] = None,
) -> QuarantinePage:
    """Quarantined records, newest first, with their reason, source and batch."""
    return answer(lambda: quarantine_records(cfg, reason=reason, task=task, batch=batch, source=source,
                                             offset=page.offset, limit=page.limit))  # fmt: skip


# --- data versions ----------------------------------------------------------------------------------


@router.get("/data/tables")
def tables(cfg: ConfigDep) -> list[TableInfo]:
    """Every lake table: latest version, rows, files, last commit."""
    return answer(lambda: versions.list_tables(cfg))


@router.get("/data/tables/{table}/history")
def history(cfg: ConfigDep, table: Table, page: PageDep) -> HistoryOut:
    """A table's Delta commits, newest first: operation, rows added, the batches behind it, the runs that read it."""
    h = answer(lambda: versions.table_history(cfg, table, offset=page.offset, limit=page.limit))
    return HistoryOut(items=h.commits, total=h.total, offset=h.offset, limit=h.limit, table=h.table, latest=h.latest)


@router.get("/data/tables/{table}/diff")
def diff(
    cfg: ConfigDep,
    table: Table,
    from_version: Annotated[int, Query(alias="from", ge=0, le=MAX_VERSION, description="The older version.")],
    to_version: Annotated[int, Query(alias="to", ge=0, le=MAX_VERSION, description="The newer version.")],
    samples: Annotated[int, Query(ge=0, le=versions.MAX_SAMPLES, description="Sample records of each side.")] = 5,
) -> Diff:
    """Rows added and removed between two versions, per task and per batch, with sample records."""
    return answer(lambda: versions.diff_versions(cfg, table, from_version, to_version, samples=samples))


@router.get("/data/tables/{table}/versions/{version}/runs")
def runs(cfg: ConfigDep, table: Table, version: Version) -> list[RunRef]:
    """Training runs that read this version (curated: as their data, or where their new rows start; replay: as
    their replay buffer)."""
    return answer(lambda: versions.runs_reading(cfg, table, version))


RESTORE = operate("clm_ingest")
"""A restore rewrites what ``clm_ingest`` writes (the lake tables): whoever may trigger it may restore."""


class RestoreRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = Field(ge=0, le=MAX_VERSION)
    """The version whose content the table gets back (as a new version)."""
    reason: str = Field(min_length=1, max_length=2000, pattern=r"\S")
    """Why: kept in the audit log with the caller's name."""


@router.post("/data/tables/{table}/restore", dependencies=RESTORE, response_model=Restored)
def restore(cfg: ConfigDep, table: Table, body: RestoreRequest, actor: ActorDep) -> Restored:
    """Make ``version`` of the table its content again, as a new version; audited as ``data.restored``. Training
    after it reads the restored rows. 404: unknown table or version; 409: the version's files were vacuumed."""
    try:
        return answer(lambda: lake_versions.restore(cfg, table, body.version, actor=actor, reason=body.reason),
                      not_found=(versions.NotFound, UnknownVersion))  # fmt: skip
    except ClmError as exc:
        raise HTTPException(409, str(exc)) from None
    except OSError as exc:  # the lake cannot be reached: 503 naming it, like every read
        raise lake_failed(cfg, exc) from None
