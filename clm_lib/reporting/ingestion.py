"""Ingestion batches and what they add up to: batches per source, counts that reconcile, per-task and per-reason
breakdowns. The quarantine browser is :mod:`clm_lib.reporting.quarantine`, rows and bytes per hour
:mod:`clm_lib.reporting.volume`, the screen that shows them all :mod:`clm_lib.reporting.ingestion_page`.

Where each number comes from:

- batches and their counts: clm's database (``ingestion_batches``), one row per landing file;
- what the lake holds: the Delta tables themselves. Row and byte totals come from the Delta log (each data
  file's ``num_records`` and size: no data is read); per-reason and per-task counts of ``quarantine`` read its
  two small columns.

"Counts reconcile" is checked twice: each batch's ``rows_in == curated + quarantined + duplicate`` (ingest refuses
to commit otherwise), and what the committed batches say they wrote against what the tables hold
(:class:`Reconciliation`). The review queue's corrections (reason ``pending_review``, batch
``feedback-review-<id>``) are quarantine rows that no batch wrote; they are counted apart.

Stores are read, never created (:mod:`clm_lib.reporting.reads`). A store that cannot be read raises
:class:`~clm_lib.reporting.stores.StoreDown`, naming the store and since when this process has failed to read it;
screens show it as a notice, REST routes as a 503.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import computed_field
from sqlalchemy import Select, func, not_, or_, select

from clm_lib.config import ClmConfig
from clm_lib.db.models import IngestionBatch
from clm_lib.reporting.params import BadFilter, NotFound
from clm_lib.reporting.reads import (
    StoreProblem,
    as_datetime,
    database,
    file_stats,
    open_table,
    read_columns,
    value_counts,
)
from clm_lib.reporting.schema import DOCUMENTED
from clm_lib.reporting.stores import StoreDown, utc
from clm_lib.reporting.volume import Hour, hour_of, hourly

SOURCE_KINDS = ("files", "feedback", "webhook", "kafka")
"""Where a batch came from. ``files``: a landing file; ``feedback``: examples and accepted corrections the serving
slots publish (``feedback-*.jsonl`` files) and the review queue (``feedback:<slot>``); ``webhook`` and ``kafka``:
batches whose source is written ``webhook:...`` or ``kafka:...``."""
BATCH_STATUSES = ("running", "committed", "failed", "gave_up")
"""What ``ingestion_batches.status`` holds (a ``skipped`` re-ingest is never stored)."""
REVIEW_REASON = "pending_review"
REVIEW_BATCH_PREFIX = "feedback-review-"
"""Batch id of a correction the review queue put in quarantine: ``feedback-review-<feedback id>``."""
MAX_HOURS = 24 * 31


# --- sources ----------------------------------------------------------------------------------------


def source_kind(source: str | None) -> str:
    """Which of :data:`SOURCE_KINDS` a batch's or a quarantined record's ``source`` belongs to."""
    s = source or ""
    for kind in ("kafka", "webhook", "feedback"):
        if s.startswith(f"{kind}:"):
            return kind
    return "feedback" if s.startswith("feedback-") or "/feedback-" in s else "files"


def _kind_clause(kind: str):
    column = IngestionBatch.source
    feedback = or_(column.like("feedback:%"), column.like("feedback-%"), column.like("%/feedback-%"))
    if kind == "feedback":
        return feedback
    if kind in ("kafka", "webhook"):
        return column.like(f"{kind}:%")
    return not_(or_(feedback, column.like("kafka:%"), column.like("webhook:%")))


def kind_mask(sources: pa.ChunkedArray | pa.Array, kind: str) -> pa.ChunkedArray | pa.Array:
    """Which of ``sources`` (an Arrow column) belong to source ``kind``: :func:`source_kind`, vectorised."""
    sources = pc.fill_null(sources, "")
    tagged = {k: pc.starts_with(sources, f"{k}:") for k in ("kafka", "webhook", "feedback")}
    tagged["feedback"] = pc.or_(
        tagged["feedback"], pc.or_(pc.starts_with(sources, "feedback-"), pc.match_substring(sources, "/feedback-"))
    )
    if kind != "files":
        return tagged[kind]
    return pc.invert(pc.or_(pc.or_(tagged["kafka"], tagged["webhook"]), tagged["feedback"]))


def check_kind(value: str | None, name: str = "source") -> str | None:
    if value is not None and value not in SOURCE_KINDS:
        raise BadFilter(name, f"{value[:100]!r} is not a source (one of: {', '.join(SOURCE_KINDS)})")
    return value


def check_status(value: str | None, name: str = "status") -> str | None:
    if value is not None and value not in BATCH_STATUSES:
        raise BadFilter(name, f"{value[:100]!r} is not a batch status (one of: {', '.join(BATCH_STATUSES)})")
    return value


# --- batches ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Batch:
    """One ingestion batch: one landing file, ingested once. ``rows_in = curated + quarantined + duplicate``."""

    __pydantic_config__ = DOCUMENTED

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
    task_counts: dict[str, int]
    quarantine_reasons: dict[str, int]
    raw_version: int | None
    curated_version: int | None
    quarantine_version: int | None
    notes: list[str]
    error: str | None
    started_at: datetime | None
    finished_at: datetime | None

    @computed_field
    @property
    def reconciles(self) -> bool:
        """Every row in went to exactly one place (curated, quarantined or duplicate)."""
        return self.rows_in == self.rows_curated + self.rows_quarantined + self.rows_duplicate

    @property
    def refused(self) -> bool:
        """The file was quarantined as a whole (a link, over a cap): one quarantine row, nothing in raw."""
        return self.status == "committed" and bool(self.error)


def _batch(row) -> Batch:
    return Batch(
        id=row.id, source=row.source, kind=source_kind(row.source), source_format=row.source_format,
        status=row.status, rows_in=row.rows_in or 0, rows_curated=row.rows_curated or 0,
        rows_quarantined=row.rows_quarantined or 0, rows_duplicate=row.rows_duplicate or 0,
        task_counts={str(k): int(v) for k, v in (row.task_counts or {}).items()},
        quarantine_reasons={str(k): int(v) for k, v in (row.quarantine_reasons or {}).items()},
        raw_version=row.raw_version, curated_version=row.curated_version, quarantine_version=row.quarantine_version,
        notes=[str(n) for n in row.notes or []], error=row.error, started_at=utc(row.started_at),
        finished_at=utc(row.finished_at),
    )  # fmt: skip


def _batch_query(source: str | None, status: str | None, since: datetime | None) -> Select:
    stmt = select(IngestionBatch)
    if source is not None:
        stmt = stmt.where(_kind_clause(source))
    if status is not None:
        stmt = stmt.where(IngestionBatch.status == status)
    if since is not None:
        stmt = stmt.where(IngestionBatch.started_at >= since)
    return stmt


def _since(since: datetime | None) -> datetime | None:
    if since is None:
        return None
    try:
        return since.replace(tzinfo=UTC) if since.tzinfo is None else since.astimezone(UTC)
    except OverflowError:  # year 1 at +05:00 is before datetime.min in UTC (and year 9999 at -05:00 after max)
        return (datetime.min if since.year == 1 else datetime.max).replace(tzinfo=UTC)


def list_batches(
    cfg: ClmConfig,
    *,
    source: str | None = None,
    status: str | None = None,
    since: datetime | None = None,
    offset: int = 0,
    limit: int = 50,
) -> tuple[list[Batch], int]:
    """Batches newest first (``source``: one of :data:`SOURCE_KINDS`; ``since``: started at or after), one page,
    and how many match."""
    check_kind(source)
    check_status(status)
    since = _since(since)
    with database(cfg) as s:
        if s is None:
            return [], 0
        stmt = _batch_query(source, status, since)
        total = s.scalar(select(func.count()).select_from(stmt.subquery())) or 0
        newest = stmt.order_by(IngestionBatch.started_at.desc(), IngestionBatch.id)
        rows = s.scalars(newest.offset(offset).limit(limit)).all()
        return [_batch(r) for r in rows], total


def get_batch(cfg: ClmConfig, batch_id: str) -> Batch:
    """One batch, or :class:`NotFound` naming it."""
    with database(cfg) as s:
        row = s.get(IngestionBatch, batch_id) if s is not None and len(batch_id) <= 64 else None
        if row is None:
            raise NotFound(f"no ingestion batch {batch_id[:100]!r}")
        return _batch(row)


# --- the summary ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceTotals:
    """The batches of one source kind and what they did."""

    __pydantic_config__ = DOCUMENTED

    kind: str
    batches: int
    statuses: dict[str, int]
    rows_in: int
    rows_curated: int
    rows_quarantined: int
    rows_duplicate: int
    unreconciled: list[str]
    """Committed batches whose counts do not add up (never expected: ingest refuses to commit them)."""

    @computed_field
    @property
    def reconciles(self) -> bool:
        """The committed batches' rows in add up to curated + quarantined + duplicate."""
        return self.rows_in == self.rows_curated + self.rows_quarantined + self.rows_duplicate


@dataclass(frozen=True)
class TaskCounts:
    """Curated and quarantined rows of one task."""

    __pydantic_config__ = DOCUMENTED

    task: str
    curated: int
    """Curated rows the committed batches wrote for this task."""
    quarantined: int
    """Rows of this task in the quarantine table (a record whose task could not be read counts as ``(none)``)."""


@dataclass(frozen=True)
class ReasonCounts:
    """Quarantined rows of one reason: what the batches say against what the quarantine table holds."""

    __pydantic_config__ = DOCUMENTED

    reason: str
    batches_say: int
    """Rows the committed batches quarantined for this reason."""
    in_quarantine: int
    """Rows with this reason in the quarantine table (review-queue corrections included)."""
    review_queue: int
    """Of those, corrections the review queue put there (no batch wrote them)."""

    @computed_field
    @property
    def reconciles(self) -> bool:
        """What the batches say equals what the table holds, review-queue corrections left out."""
        return self.batches_say == self.in_quarantine - self.review_queue


@dataclass(frozen=True)
class Reconciliation:
    """What the committed batches say they wrote to a table against what it holds."""

    __pydantic_config__ = DOCUMENTED

    table: str
    batches_say: int
    table_holds: int | None
    """None: the table cannot be read (see the summary's problems)."""
    note: str = ""
    """Why the two may differ for now (a batch running, a failed attempt), when they may."""

    @computed_field
    @property
    def ok(self) -> bool:
        """The table holds what the batches say."""
        return self.table_holds is not None and self.batches_say == self.table_holds


@dataclass(frozen=True)
class IngestionSummary:
    """What the Data ingestion screen's summary shows."""

    __pydantic_config__ = DOCUMENTED

    generated_at: datetime
    hours: int
    sources: list[SourceTotals]
    tasks: list[TaskCounts]
    reasons: list[ReasonCounts]
    reconciliation: list[Reconciliation]
    hourly: list[Hour]
    running: int
    """Batches under way: their rows may be in the tables before the batch says so."""
    problems: list[StoreProblem] = field(default_factory=list)
    """Stores that could not be read: their numbers are left out."""


def ingestion_summary(cfg: ClmConfig, *, hours: int = 48, now: datetime | None = None) -> IngestionSummary:
    """Batches per source, per task and per reason, what the tables hold against what the batches say, and the
    last ``hours`` hour by hour. Raises :class:`StoreDown` when clm's database cannot be read; a lake that cannot
    be read leaves its numbers out and is named in ``problems``."""
    if not 1 <= hours <= MAX_HOURS:
        raise BadFilter("hours", f"must be between 1 and {MAX_HOURS}")
    now = now or datetime.now(UTC)
    first_hour = hour_of(now) - timedelta(hours=hours - 1)
    batches = all_batches(cfg)
    problems: list[StoreProblem] = []
    try:
        lake = _lake_counts(cfg, first_hour)
    except StoreDown as down:
        problems.append(StoreProblem.of(down))
        lake = None

    committed = [b for b in batches if b.status == "committed"]
    sources = []
    for kind in SOURCE_KINDS:
        mine = [b for b in batches if b.kind == kind]
        if not mine and kind in ("webhook", "kafka"):
            continue
        done = [b for b in mine if b.status == "committed"]
        sources.append(SourceTotals(
            kind=kind, batches=len(mine), statuses=dict(sorted(Counter(b.status for b in mine).items())),
            rows_in=sum(b.rows_in for b in done), rows_curated=sum(b.rows_curated for b in done),
            rows_quarantined=sum(b.rows_quarantined for b in done), rows_duplicate=sum(b.rows_duplicate for b in done),
            unreconciled=[b.id for b in done if not b.reconciles],
        ))  # fmt: skip

    curated_by_task: Counter[str] = Counter()
    said_by_reason: Counter[str] = Counter()
    for b in committed:
        curated_by_task.update(b.task_counts)
        said_by_reason.update(b.quarantine_reasons)
    quarantined_by_task = lake["quarantine_tasks"] if lake else Counter()
    tasks = [TaskCounts(t, curated_by_task.get(t, 0), quarantined_by_task.get(t, 0))
             for t in sorted(set(curated_by_task) | set(quarantined_by_task))]  # fmt: skip
    in_quarantine = lake["reasons"] if lake else Counter()
    review = lake["review_reasons"] if lake else Counter()
    reasons = [ReasonCounts(r, said_by_reason.get(r, 0), in_quarantine.get(r, 0), review.get(r, 0))
               for r in sorted(set(said_by_reason) | set(in_quarantine))]  # fmt: skip
    reasons.sort(key=lambda r: (-max(r.batches_say, r.in_quarantine), r.reason))

    running = sum(b.status == "running" for b in batches)
    partial = [b.id for b in batches if b.status in ("failed", "gave_up")]
    note = (
        "a batch is running: the table may hold its rows before the batch is committed"
        if running
        else (
            f"{len(partial)} batch(es) failed; a failed attempt may have written rows before it stopped"
            if partial
            else ""
        )
    )
    holds = lake["rows"] if lake else {}
    reconciliation = [
        Reconciliation("raw", sum(b.rows_in for b in committed if not b.refused), holds.get("raw"), note),
        Reconciliation("curated", sum(b.rows_curated for b in committed), holds.get("curated"), note),
        Reconciliation(
            "quarantine", sum(b.rows_quarantined for b in committed),
            None if lake is None else holds["quarantine"] - lake["review_rows"],
            "review-queue corrections left out (no batch writes them)" + (f"; {note}" if note else ""),
        ),
    ]  # fmt: skip

    hourly_ = hourly(batches, lake["raw_bytes"] if lake else {}, first_hour, hours)
    return IngestionSummary(now, hours, sources, tasks, reasons, reconciliation, hourly_, running, problems)


def all_batches(cfg: ClmConfig) -> list[Batch]:
    """Every batch, oldest first."""
    with database(cfg) as s:
        if s is None:
            return []
        return [_batch(r) for r in s.scalars(select(IngestionBatch).order_by(IngestionBatch.started_at))]


def _lake_counts(cfg: ClmConfig, first_hour: datetime) -> dict[str, Any]:
    rows: dict[str, int] = {}
    raw_bytes: dict[datetime, int] = Counter()
    for name in ("raw", "curated", "quarantine"):
        table = open_table(cfg, name)
        stats = file_stats(cfg, table) if table is not None else None
        rows[name] = int(pc.sum(stats["num_records"]).as_py() or 0) if stats is not None and stats.num_rows else 0
        if name == "raw" and stats is not None and stats.num_rows:
            for modified, size in zip(stats["modification_time"].to_pylist(), stats["size_bytes"].to_pylist(),
                                      strict=True):  # fmt: skip
                at = as_datetime(modified)
                if at is not None and at >= first_hour:
                    raw_bytes[hour_of(at)] += int(size or 0)
    quarantine = open_table(cfg, "quarantine")
    reasons: Counter[str] = Counter()
    review_reasons: Counter[str] = Counter()
    tasks: Counter[str] = Counter()
    if quarantine is not None:
        q = read_columns(cfg, quarantine, ["reason", "task", "batch_id"])
        from_review = pc.fill_null(pc.starts_with(q["batch_id"], REVIEW_BATCH_PREFIX), False)
        reasons.update(value_counts(q["reason"]))
        review_reasons.update(value_counts(q.filter(from_review)["reason"]))
        tasks.update(value_counts(pc.fill_null(q["task"], "(none)")))
    return {"rows": rows, "raw_bytes": raw_bytes, "reasons": reasons, "review_reasons": review_reasons,
            "review_rows": sum(review_reasons.values()), "quarantine_tasks": tasks}  # fmt: skip
