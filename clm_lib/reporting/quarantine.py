"""The quarantine browser: quarantined records, newest first, filtered by reason, task, batch and source, one page
at a time, each as it arrived.

Only the key columns of matching rows are read to sort and count; the full rows are read for the page only, and
each text field comes back cut at :data:`MAX_FIELD_CHARS` (named in ``truncated``). A review-queue correction
(reason ``pending_review``) also says what the queue decided, from clm's database. Records are untrusted text:
escape them wherever they are shown.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import select

from clm_lib.config import ClmConfig
from clm_lib.db.models import ServingFeedback
from clm_lib.reporting.ingestion import REVIEW_BATCH_PREFIX, REVIEW_REASON, check_kind, kind_mask, source_kind
from clm_lib.reporting.params import BadFilter
from clm_lib.reporting.reads import as_datetime, database, open_table, read_columns
from clm_lib.reporting.schema import DOCUMENTED
from clm_lib.reporting.stores import StoreDown

TEXT_FIELDS = ("task", "prompt", "response", "metadata", "raw_text", "detail")
MAX_FIELD_CHARS = 65_536
"""A quarantined field longer than this comes back cut (and named in ``truncated``): a hostile record must not
make every page of the browser megabytes long."""


@dataclass(frozen=True)
class QuarantinedRecord:
    """One quarantined record as it arrived (untrusted text: escape it wherever it is shown)."""

    __pydantic_config__ = DOCUMENTED

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
    """Fields cut at :data:`MAX_FIELD_CHARS` characters."""
    review_status: str | None = None
    """For a correction from the review queue: ``pending_review``, ``accepted`` or ``rejected`` (None: not one, or
    clm's database cannot say)."""
    feedback_id: int | None = None
    """The review queue's id of a correction (None: not one)."""

    @property
    def in_review_queue(self) -> bool:
        return self.feedback_id is not None


@dataclass(frozen=True)
class QuarantinePage:
    """One page of quarantined records: ``items`` from ``offset``, at most ``limit`` of ``total``."""

    __pydantic_config__ = DOCUMENTED

    items: list[QuarantinedRecord]
    total: int
    offset: int
    limit: int
    filters: dict[str, str]
    """The filters applied (those given)."""


_KEYS = ["batch_id", "line", "ingested_at", "reason", "task", "source"]


def quarantine_records(
    cfg: ClmConfig,
    *,
    reason: str | None = None,
    task: str | None = None,
    batch: str | None = None,
    source: str | None = None,
    offset: int = 0,
    limit: int = 50,
    max_chars: int = MAX_FIELD_CHARS,
) -> QuarantinePage:
    """Quarantined records, newest first, matching every filter given (``source``: one of :data:`SOURCE_KINDS`),
    one page of them and how many match. Only the key columns of matching rows are read to sort and count; full
    rows are read for the page only. Raises :class:`StoreDown` when the lake cannot be read."""
    check_kind(source)
    filters = {k: v for k, v in {"reason": reason, "task": task, "batch": batch, "source": source}.items() if v}
    for name, value in filters.items():
        if len(value) > 200:
            raise BadFilter(name, "longer than 200 characters")
    table = open_table(cfg, "quarantine")
    if table is None:
        return QuarantinePage([], 0, offset, limit, filters)
    where = None
    for column, value in (("reason", reason), ("task", task), ("batch_id", batch)):
        if value is not None:
            clause = pc.field(column) == value
            where = clause if where is None else where & clause
    keys = read_columns(cfg, table, _KEYS, where)
    if source is not None:
        keys = keys.filter(kind_mask(keys["source"], source))
    total = keys.num_rows
    keys = keys.sort_by([("ingested_at", "descending"), ("batch_id", "ascending"), ("line", "ascending")])
    page = keys.slice(offset, limit).select(["batch_id", "line"])
    if not page.num_rows:
        return QuarantinePage([], total, offset, limit, filters)
    wanted = pc.field("batch_id").isin(pc.unique(page["batch_id"])) & pc.field("line").isin(pc.unique(page["line"]))
    columns = ["batch_id", "line", "source", "reason", "detail", "id", *TEXT_FIELDS[:5], "ingested_at"]
    full = read_columns(cfg, table, columns, wanted if where is None else where & wanted)
    order = page.append_column("_order", pa.array(range(page.num_rows), pa.int64()))
    rows = order.join(full, keys=["batch_id", "line"], join_type="inner").sort_by("_order")
    rows = _clip_table(rows, max_chars)
    items = [_record(r) for r in rows.to_pylist()]
    return QuarantinePage(_with_review(cfg, items), total, offset, limit, filters)


def _clip_table(rows: pa.Table, max_chars: int) -> pa.Table:
    for name in (*TEXT_FIELDS, "source"):
        i = rows.column_names.index(name)
        values = rows[name]
        long = pc.fill_null(pc.greater(pc.utf8_length(values), max_chars), False)
        rows = rows.set_column(i, name, pc.if_else(long, pc.utf8_slice_codeunits(values, 0, max_chars), values))
        rows = rows.append_column(f"_cut_{name}", long)
    return rows


def _record(row: dict[str, Any]) -> QuarantinedRecord:
    cut = [n for n in (*TEXT_FIELDS, "source") if row.get(f"_cut_{n}")]
    feedback_id = None
    batch = row["batch_id"] or ""
    if row["reason"] == REVIEW_REASON and batch.startswith(REVIEW_BATCH_PREFIX):
        suffix = batch.removeprefix(REVIEW_BATCH_PREFIX)
        feedback_id = int(suffix) if suffix.isdigit() and len(suffix) < 19 else None
    return QuarantinedRecord(
        batch_id=batch, source=row["source"] or "", kind=source_kind(row["source"]), line=int(row["line"] or 0),
        reason=row["reason"] or "", detail=row["detail"] or "", id=row["id"], task=row["task"], prompt=row["prompt"],
        response=row["response"], metadata=row["metadata"], raw_text=row["raw_text"],
        ingested_at=as_datetime(row["ingested_at"]), truncated=cut, feedback_id=feedback_id,
    )  # fmt: skip


def _with_review(cfg: ClmConfig, items: list[QuarantinedRecord]) -> list[QuarantinedRecord]:
    """Say what became of each review-queue correction on the page (clm's database holds the queue)."""
    ids = [r.feedback_id for r in items if r.feedback_id is not None]
    if not ids:
        return items
    try:
        with database(cfg) as s:
            found = {} if s is None else dict(
                s.execute(select(ServingFeedback.id, ServingFeedback.status).where(ServingFeedback.id.in_(ids))).all()
            )  # fmt: skip
    except StoreDown:
        return items  # the records still show; only their review status is unknown
    return [replace(r, review_status=found.get(r.feedback_id)) if r.feedback_id is not None else r for r in items]
