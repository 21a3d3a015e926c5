"""The data ingestion screen and its REST routes: batches per source, counts that reconcile, per-task and
per-reason breakdowns, the quarantine browser, and rows and bytes per hour.

Where each number comes from:

- batches, their counts and per-hour rows: clm's database (``ingestion_batches``), one row per landing file;
- what the lake holds: the Delta tables themselves. Row and byte totals come from the Delta log (each data
  file's ``num_records`` and size: no data is read); per-reason and per-task counts of ``quarantine`` read its
  two small columns; the quarantine browser reads its key columns to filter, sort and count, then the full rows
  of one page only.

"Counts reconcile" is checked twice: each batch's ``rows_in == curated + quarantined + duplicate`` (ingest refuses
to commit otherwise), and what the committed batches say they wrote against what the tables hold
(:class:`Reconciliation`). The review queue's corrections (reason ``pending_review``, batch
``feedback-review-<id>``) are quarantine rows that no batch wrote; they are counted apart.

Stores are read, never created. A missing SQLite file is a fresh install (no batch yet). A store that cannot be
read raises :class:`~clm_lib.reporting.stores.StoreDown`, naming the store and since when this process has failed
to read it; screens show it as a notice, REST routes as a 503.
"""

from __future__ import annotations

import threading
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import Select, func, not_, or_, select
from sqlalchemy.orm import Session

from clm_lib.config import ClmConfig
from clm_lib.db.models import IngestionBatch, ServingFeedback
from clm_lib.errors import ClmError
from clm_lib.reporting.charts import LinearScale, Tick, compact
from clm_lib.reporting.stores import StoreDown, first_line, missing_sqlite, reading, redact_url, utc

SOURCE_KINDS = ("files", "feedback", "webhook", "kafka")
"""Where a batch came from. ``files``: a landing file; ``feedback``: examples and accepted corrections the serving
slots publish (``feedback-*.jsonl`` files) and the review queue (``feedback:<slot>``); ``webhook`` and ``kafka``:
batches whose source is written ``webhook:...`` or ``kafka:...``."""
BATCH_STATUSES = ("running", "committed", "failed", "gave_up")
"""What ``ingestion_batches.status`` holds (a ``skipped`` re-ingest is never stored)."""
REVIEW_REASON = "pending_review"
REVIEW_BATCH_PREFIX = "feedback-review-"
"""Batch id of a correction the review queue put in quarantine: ``feedback-review-<feedback id>``."""
TEXT_FIELDS = ("task", "prompt", "response", "metadata", "raw_text", "detail")
MAX_FIELD_CHARS = 65_536
"""A quarantined field longer than this comes back cut (and named in ``truncated``): a hostile record must not
make every page of the browser megabytes long."""
MAX_HOURS = 24 * 31


class BadFilter(ClmError):
    """A filter or parameter that cannot be applied; ``field`` names it (a REST route answers 422)."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(f"{field}: {message}")


class NotFound(ClmError):
    """An unknown batch, table or version; the message names it (a REST route answers 404)."""


# --- stores -----------------------------------------------------------------------------------------

LAKE = "the lake"
_lake_down_since: list[datetime] = []
_lake_lock = threading.Lock()


def store_problem(exc: StoreDown) -> dict[str, Any]:
    """A :class:`~clm_lib.reporting.stores.StoreDown` as data: which store, why, since when."""
    return {"store": exc.store, "problem": exc.problem, "since": exc.since.isoformat()}


@contextmanager
def database(cfg: ClmConfig) -> Iterator[Session | None]:
    """A read session on clm's database; None when its SQLite file does not exist yet (a fresh install: nothing
    ingested). Raises :class:`~clm_lib.reporting.stores.StoreDown` when it cannot be read."""
    if missing_sqlite(cfg.database_url):
        yield None
        return
    with reading(cfg.database_url) as session:
        yield session


def lake_failed(cfg: ClmConfig, exc: BaseException) -> StoreDown:
    """The lake could not be read: dated from the first failure this process saw since its last good read."""
    with _lake_lock:
        if not _lake_down_since:
            _lake_down_since.append(datetime.now(UTC))
        since = _lake_down_since[0]
    return StoreDown(LAKE, f"{redact_url(cfg.lake_uri)}: {first_line(exc)}", since)


def _lake_ok() -> None:
    with _lake_lock:
        _lake_down_since.clear()


def open_table(cfg: ClmConfig, name: str, version: int | None = None):
    """``DeltaTable`` of lake table ``name`` (at ``version``), None when it was never written. Raises
    :class:`StoreDown` when the lake cannot be reached, :class:`NotFound` for an unknown table or version."""
    from deltalake import DeltaTable
    from deltalake.exceptions import DeltaError

    from clm_lib.data import lake

    if name not in lake.TABLES:
        raise NotFound(f"no lake table {name!r} (clm keeps: {', '.join(lake.TABLES)})")
    uri, options = lake.table_uri(cfg, name), lake.storage_options(cfg)
    try:
        if not DeltaTable.is_deltatable(uri, storage_options=options):
            if version is not None:
                raise NotFound(f"lake table {name!r} has no version {version}: it was never written")
            _lake_ok()
            return None
        table = DeltaTable(uri, storage_options=options)
        latest = table.version()
        if version is not None and version != latest:
            if not 0 <= version <= latest:
                raise NotFound(f"lake table {name!r} has no version {version} (latest is {latest})")
            try:
                table.load_as_version(version)
            except DeltaError as exc:  # its log was cleaned up (log retention)
                raise NotFound(f"lake table {name!r} version {version} can no longer be read: {exc}") from None
    except (OSError, DeltaError) as exc:
        raise lake_failed(cfg, exc) from None
    _lake_ok()
    return table


def file_stats(cfg: ClmConfig, table) -> pa.Table:
    """The Delta log's view of the table's current files: ``num_records``, ``size_bytes``, ``modification_time``
    (no data file is read)."""
    from deltalake.exceptions import DeltaError

    try:
        actions = pa.table(table.get_add_actions(flatten=True))
    except (OSError, DeltaError) as exc:
        raise lake_failed(cfg, exc) from None
    return actions.select(
        [c for c in ("path", "num_records", "size_bytes", "modification_time") if c in actions.column_names]
    )


def read_columns(
    cfg: ClmConfig, table, columns: list[str], where: pc.Expression | None = None, files: list[str] | None = None
) -> pa.Table:
    """``columns`` of a ``DeltaTable`` (only rows matching ``where``; only ``files`` when given)."""
    import pyarrow.dataset as pds
    from deltalake.exceptions import DeltaError

    try:
        dataset = table.to_pyarrow_dataset()
        if files is not None:
            dataset = pds.dataset(files, schema=dataset.schema, format="parquet", filesystem=dataset.filesystem)
        present = [c for c in columns if c in dataset.schema.names]
        data = dataset.to_table(columns=present, filter=where)
    except (OSError, DeltaError) as exc:
        raise lake_failed(cfg, exc) from None
    for name in columns:  # a column added to the schema later reads as nulls in older tables
        if name not in data.column_names:
            data = data.append_column(name, pa.nulls(data.num_rows, pa.string()))
    return data.select(columns)


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


def _kind_mask(sources: pa.ChunkedArray | pa.Array, kind: str) -> pa.ChunkedArray | pa.Array:
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
    """One ingestion batch (one landing file, ingested once)."""

    id: str
    source: str
    kind: str
    source_format: str
    status: str
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

    @property
    def reconciles(self) -> bool:
        """Every row in went to exactly one place (curated, quarantined or duplicate)."""
        return self.rows_in == self.rows_curated + self.rows_quarantined + self.rows_duplicate

    @property
    def refused(self) -> bool:
        """The file was quarantined as a whole (a link, over a cap): one quarantine row, nothing in raw."""
        return self.status == "committed" and bool(self.error)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "reconciles": self.reconciles}


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

    kind: str
    batches: int
    statuses: dict[str, int]
    rows_in: int
    rows_curated: int
    rows_quarantined: int
    rows_duplicate: int
    unreconciled: list[str]
    """Committed batches whose counts do not add up (never expected: ingest refuses to commit them)."""

    @property
    def reconciles(self) -> bool:
        return self.rows_in == self.rows_curated + self.rows_quarantined + self.rows_duplicate

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "reconciles": self.reconciles}


@dataclass(frozen=True)
class TaskCounts:
    task: str
    curated: int
    """Curated rows the committed batches wrote for this task."""
    quarantined: int
    """Rows of this task in the quarantine table (a record whose task could not be read counts as ``(none)``)."""


@dataclass(frozen=True)
class ReasonCounts:
    reason: str
    batches_say: int
    """Rows the committed batches quarantined for this reason."""
    in_quarantine: int
    """Rows with this reason in the quarantine table (review-queue corrections included)."""
    review_queue: int
    """Of those, corrections the review queue put there (no batch wrote them)."""

    @property
    def reconciles(self) -> bool:
        return self.batches_say == self.in_quarantine - self.review_queue


@dataclass(frozen=True)
class Reconciliation:
    """What the committed batches say they wrote to a table against what it holds."""

    table: str
    batches_say: int
    table_holds: int | None
    """None: the table cannot be read (see the summary's problems)."""
    note: str = ""

    @property
    def ok(self) -> bool:
        return self.table_holds is not None and self.batches_say == self.table_holds


@dataclass(frozen=True)
class Hour:
    """One hour of ingestion: batches that finished in it, their rows, and the bytes written to ``raw``."""

    start: datetime
    batches: int = 0
    rows_in: int = 0
    rows_curated: int = 0
    rows_quarantined: int = 0
    rows_duplicate: int = 0
    raw_bytes: int = 0
    """Parquet bytes (compressed) the hour's appends added to ``raw``, from the Delta log."""


@dataclass(frozen=True)
class IngestionSummary:
    generated_at: datetime
    hours: int
    sources: list[SourceTotals]
    tasks: list[TaskCounts]
    reasons: list[ReasonCounts]
    reconciliation: list[Reconciliation]
    hourly: list[Hour]
    running: int
    """Batches under way: their rows may be in the tables before the batch says so."""
    problems: list[StoreDown] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "generated_at": self.generated_at.isoformat(),
            "hours": self.hours,
            "sources": [s.as_dict() for s in self.sources],
            "tasks": [asdict(t) for t in self.tasks],
            "reasons": [{**asdict(r), "reconciles": r.reconciles} for r in self.reasons],
            "reconciliation": [{**asdict(r), "ok": r.ok} for r in self.reconciliation],
            "hourly": [{**asdict(h), "start": h.start.isoformat()} for h in self.hourly],
            "running": self.running,
            "problems": [store_problem(p) for p in self.problems],
        }


def _hour(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def ingestion_summary(cfg: ClmConfig, *, hours: int = 48, now: datetime | None = None) -> IngestionSummary:
    """Batches per source, per task and per reason, what the tables hold against what the batches say, and the
    last ``hours`` hour by hour. Raises :class:`StoreDown` when clm's database cannot be read; a lake that cannot
    be read leaves its numbers out and is named in ``problems``."""
    if not 1 <= hours <= MAX_HOURS:
        raise BadFilter("hours", f"must be between 1 and {MAX_HOURS}")
    now = now or datetime.now(UTC)
    first_hour = _hour(now) - timedelta(hours=hours - 1)
    batches = _all_batches(cfg)
    problems: list[StoreDown] = []
    try:
        lake = _lake_counts(cfg, first_hour)
    except StoreDown as down:
        problems.append(down)
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

    by_hour: dict[datetime, dict[str, int]] = defaultdict(Counter)
    for b in batches:
        if b.finished_at is not None and b.finished_at >= first_hour and b.status == "committed":
            h = by_hour[_hour(b.finished_at)]
            h["batches"] += 1
            for name in ("rows_in", "rows_curated", "rows_quarantined", "rows_duplicate"):
                h[name] += getattr(b, name)
    for start, size in (lake["raw_bytes"] if lake else {}).items():
        by_hour[start]["raw_bytes"] += size
    hourly = [Hour(first_hour + timedelta(hours=i), **by_hour.get(first_hour + timedelta(hours=i), {}))
              for i in range(hours)]  # fmt: skip
    return IngestionSummary(now, hours, sources, tasks, reasons, reconciliation, hourly, running, problems)


def _all_batches(cfg: ClmConfig) -> list[Batch]:
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
                at = _as_datetime(modified)
                if at is not None and at >= first_hour:
                    raw_bytes[_hour(at)] += int(size or 0)
    quarantine = open_table(cfg, "quarantine")
    reasons: Counter[str] = Counter()
    review_reasons: Counter[str] = Counter()
    tasks: Counter[str] = Counter()
    if quarantine is not None:
        q = read_columns(cfg, quarantine, ["reason", "task", "batch_id"])
        from_review = pc.fill_null(pc.starts_with(q["batch_id"], REVIEW_BATCH_PREFIX), False)
        reasons.update(_value_counts(q["reason"]))
        review_reasons.update(_value_counts(q.filter(from_review)["reason"]))
        tasks.update(_value_counts(pc.fill_null(q["task"], "(none)")))
    return {"rows": rows, "raw_bytes": raw_bytes, "reasons": reasons, "review_reasons": review_reasons,
            "review_rows": sum(review_reasons.values()), "quarantine_tasks": tasks}  # fmt: skip


def _value_counts(values: pa.ChunkedArray) -> dict[str, int]:
    if not len(values):
        return {}
    return {str(d["values"]): int(d["counts"]) for d in pc.value_counts(values).to_pylist()}


def _as_datetime(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromtimestamp(int(value) / 1000, UTC)  # the Delta log's milliseconds since the epoch


# --- the quarantine browser -------------------------------------------------------------------------


@dataclass(frozen=True)
class QuarantinedRecord:
    """One quarantined record as it arrived (untrusted text: escape it wherever it is shown)."""

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

    @property
    def in_review_queue(self) -> bool:
        return self.feedback_id is not None

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["ingested_at"] = self.ingested_at.isoformat() if self.ingested_at else None
        return out


@dataclass(frozen=True)
class QuarantinePage:
    items: list[QuarantinedRecord]
    total: int
    offset: int
    limit: int
    filters: dict[str, str]


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
        keys = keys.filter(_kind_mask(keys["source"], source))
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
        ingested_at=_as_datetime(row["ingested_at"]), truncated=cut, feedback_id=feedback_id,
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


# --- presentation helpers (pure; the screen passes untrusted text through them before escaping) ----------------

_INVISIBLE = {"Cc", "Cf", "Co", "Cs", "Zl", "Zp"}


def clip(text: str | None, limit: int = 240) -> str:
    """``text`` for a table cell: at most ``limit`` characters (with an ellipsis), control and format characters
    (bidi overrides, zero-width, NUL) shown as ``\\u202e`` escapes so they cannot reorder or hide what a reader
    sees. HTML escaping is the template's job (autoescape); this only makes the text visible and bounded."""
    if text is None:
        return ""
    cut = len(text) > limit
    text = text[:limit]
    shown = "".join(c if c in "\n\t" or unicodedata.category(c) not in _INVISIBLE else f"\\u{ord(c):04x}" for c in text)
    return shown + ("…" if cut else "")


# --- the chart --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bar:
    x: float
    width: float
    segments: list[tuple[float, float, str]]
    """(y, height, CSS class) from the bottom up."""
    title: str


@dataclass(frozen=True)
class BarChart:
    width: int
    height: int
    left: float
    right: float
    bottom: float
    y_ticks: list[Tick]
    x_ticks: list[Tick]
    bars: list[Bar]


def hourly_chart(hours: list[Hour], measure: str) -> BarChart | None:
    """Bars per hour: ``rows`` stacked curated / quarantined / duplicate, or ``bytes`` written to raw. None when
    there is nothing to draw."""
    width, height, left, right_margin, top, bottom_margin = 960, 140, 50, 20, 10, 22
    right, bottom = width - right_margin, height - bottom_margin
    if measure == "rows":
        parts = [("rows_curated", "bar-curated"), ("rows_quarantined", "bar-quarantined"),
                 ("rows_duplicate", "bar-duplicate")]  # fmt: skip
    else:
        parts = [("raw_bytes", "bar-bytes")]
    totals = [sum(getattr(h, p) for p, _ in parts) for h in hours]
    if not hours or not any(totals):
        return None
    scale = LinearScale.fitting(totals)
    step = (right - left) / len(hours)
    bars = []
    for i, (h, total) in enumerate(zip(hours, totals, strict=True)):
        y, segments = float(bottom), []
        for name, css in parts:
            size = scale.unit(getattr(h, name)) * (bottom - top)
            if size > 0:
                y -= size
                segments.append((round(y, 1), round(size, 1), css))
        what = (f"{h.rows_in:,} rows in: {h.rows_curated:,} curated, {h.rows_quarantined:,} quarantined, "
                f"{h.rows_duplicate:,} duplicate ({h.batches} batches)" if measure == "rows"
                else f"{_bytes(h.raw_bytes)} written to raw")  # fmt: skip
        bars.append(
            Bar(
                round(left + i * step + step * 0.1, 1),
                round(step * 0.8, 1),
                segments,
                f"{h.start:%Y-%m-%d %H:00} UTC · {what}" if total else f"{h.start:%H:00} UTC · nothing",
            )
        )
    label = compact if measure == "rows" else _bytes
    y_ticks = [Tick(round(bottom - f * (bottom - top), 1), label(scale.top * f)) for f in (0.0, 0.5, 1.0)]
    every = max(1, len(hours) // 8)
    x_ticks = [Tick(round(left + (i + 0.5) * step, 1), f"{h.start:%m-%d %H:00}" if h.start.hour == 0 or i == 0
                    else f"{h.start:%H:00}") for i, h in enumerate(hours) if i % every == 0]  # fmt: skip
    return BarChart(width, height, left, right, bottom, y_ticks, x_ticks, bars)


def _bytes(value: float) -> str:
    for size, unit in ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
        if value >= size:
            return f"{value / size:.3g} {unit}"
    return f"{value:.0f} B"


human_bytes = _bytes


# --- the screen -------------------------------------------------------------------------------------


def int_arg(args: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    """An integer query argument of a screen, or :class:`BadFilter` naming it."""
    raw = args.get(name)
    if raw in (None, ""):
        return default
    if not (len(raw) <= 12 and raw.strip().lstrip("-").isdigit()) or not low <= int(raw) <= high:
        raise BadFilter(name, f"{raw[:40]!r} is not a whole number from {low} to {high}")
    return int(raw)


def text_arg(args: Mapping[str, str], name: str) -> str | None:
    value = (args.get(name) or "").strip()
    if len(value) > 200:
        raise BadFilter(name, "longer than 200 characters")
    return value or None


PAGE_SIZE = 25


@dataclass(frozen=True)
class IngestionPage:
    """Everything the Data ingestion screen shows; each part is also a REST route (same function)."""

    generated_at: datetime
    database_url: str
    lake_uri: str
    summary: IngestionSummary | None
    rows_chart: BarChart | None
    bytes_chart: BarChart | None
    batches: list[Batch]
    batches_total: int
    batch_filters: dict[str, Any]
    quarantine: QuarantinePage | None
    problems: list[StoreDown]
    """Stores that could not be read (each once), with since when."""
    bad_filter: BadFilter | None = None

    @property
    def status(self) -> int:
        return 422 if self.bad_filter else 200


def build_ingestion(cfg: ClmConfig, args: Mapping[str, str] | None = None) -> IngestionPage:
    """The Data ingestion screen for the query ``args`` (``hours``; batches: ``bsource``, ``bstatus``,
    ``boffset``; quarantine: ``reason``, ``task``, ``batch``, ``source``, ``offset``). Never raises for a store
    that cannot be read (it becomes a problem on the page) nor for a bad argument (the page names it, status 422)."""
    args = args or {}
    problems: list[StoreDown] = []
    bad = None
    try:
        hours = int_arg(args, "hours", 48, 1, MAX_HOURS)
        b_source = check_kind(text_arg(args, "bsource"), "bsource")
        b_status = check_status(text_arg(args, "bstatus"), "bstatus")
        b_offset = int_arg(args, "boffset", 0, 0, 10_000_000)
        q = {k: text_arg(args, k) for k in ("reason", "task", "batch", "source")}
        check_kind(q["source"])
        q_offset = int_arg(args, "offset", 0, 0, 10_000_000)
    except BadFilter as exc:
        bad, hours, b_source, b_status, b_offset, q, q_offset = exc, 48, None, None, 0, {}, 0
    summary = batches = quarantine = None
    total = 0
    try:
        summary = ingestion_summary(cfg, hours=hours)
        problems += summary.problems
    except StoreDown as down:
        problems.append(down)
    try:
        batches, total = list_batches(cfg, source=b_source, status=b_status, offset=b_offset, limit=PAGE_SIZE)
    except StoreDown as down:
        problems.append(down)
    try:
        quarantine = quarantine_records(cfg, **q, offset=q_offset, limit=PAGE_SIZE)
    except StoreDown as down:
        problems.append(down)
    unique = {p.store: p for p in problems}
    return IngestionPage(
        generated_at=datetime.now(UTC), database_url=redact_url(cfg.database_url), lake_uri=redact_url(cfg.lake_uri),
        summary=summary, rows_chart=hourly_chart(summary.hourly, "rows") if summary else None,
        bytes_chart=hourly_chart(summary.hourly, "bytes") if summary else None, batches=batches or [],
        batches_total=total, batch_filters={"bsource": b_source, "bstatus": b_status, "boffset": b_offset},
        quarantine=quarantine, problems=list(unique.values()), bad_filter=bad,
    )  # fmt: skip
