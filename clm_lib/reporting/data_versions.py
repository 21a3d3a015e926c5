"""The data versions screen and its REST routes: each lake table's Delta history, what changed between two of its
versions, and which training runs read which version.

- History comes from the Delta log (``DeltaTable.history``: version, time, operation, rows added); the batch behind
  a version from clm's database (a committed batch records the ``raw``/``curated``/``quarantine`` version that holds
  its rows); the training runs from ``training_runs`` (``curated_version``: curated as the run read it;
  ``previous_curated_version``: where its "new rows" start; ``replay_version``: the replay buffer it mixed in).
- A diff never reads a whole version. Rows of a file present in both versions are in both, so only the files one
  version has and the other lacks are read (an append reads just the appended files), and rows are matched by
  their key (the content id; ``batch_id`` + ``line`` in ``raw`` and ``quarantine``, where a record may have no id)
  with Arrow joins. Samples are capped and cut like the quarantine browser's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import computed_field
from sqlalchemy import or_, select

from clm_lib.config import ClmConfig
from clm_lib.data import lake
from clm_lib.db.models import IngestionBatch, TrainingRun
from clm_lib.reporting.params import PAGE_SIZE, BadFilter, NotFound, int_arg
from clm_lib.reporting.reads import database, file_stats, lake_failed, open_table, read_columns
from clm_lib.reporting.schema import DOCUMENTED
from clm_lib.reporting.stores import StoreDown, redact_url, utc

KEYS: dict[str, tuple[str, ...]] = {
    "raw": ("batch_id", "line"),
    "quarantine": ("batch_id", "line"),
    "curated": ("id",),
    "replay": ("id",),
    "eval": ("id",),
}
"""What identifies a row of each table within one version."""
BATCH_VERSION = {"raw": "raw_version", "curated": "curated_version", "quarantine": "quarantine_version"}
"""The ``ingestion_batches`` column that records the version of each table holding a batch's rows."""
ROLES = {
    "curated_version": "read curated at this version",
    "previous_curated_version": "took its new rows after this version",
    "replay_version": "mixed in the replay buffer at this version",
}
MAX_VERSION = 2**31 - 1
MAX_SAMPLES = 20
SAMPLE_CHARS = 2_000
SAMPLE_FIELDS = ("id", "task", "prompt", "response", "split", "source", "batch_id", "line", "reason")


@dataclass(frozen=True)
class TableInfo:
    """One lake table: its latest version, rows, files and last commit."""

    __pydantic_config__ = DOCUMENTED

    name: str
    exists: bool
    version: int | None
    rows: int
    """At the latest version, from the Delta log."""
    files: int
    size_bytes: int
    last_commit_at: datetime | None
    last_operation: str | None
    uri: str
    """Credentials removed."""


@dataclass(frozen=True)
class RunRef:
    """A training run that read a version, and how."""

    __pydantic_config__ = DOCUMENTED

    id: str
    status: str
    role: str
    """Which of :data:`ROLES` (the column of ``training_runs`` that names the version)."""
    model_version: str | None
    started_at: datetime | None
    finished_at: datetime | None
    curated_version: int | None
    previous_curated_version: int | None
    replay_version: int | None

    @computed_field
    @property
    def describe(self) -> str:
        """How the run read the version, in words."""
        return ROLES[self.role]


@dataclass(frozen=True)
class Commit:
    """One version of a table."""

    __pydantic_config__ = DOCUMENTED

    version: int
    timestamp: datetime | None
    operation: str
    mode: str | None
    rows_added: int | None
    """Rows the commit wrote (None: the Delta log does not say)."""
    files_added: int | None
    files_removed: int | None
    batches: list[str]
    """Ingestion batches whose rows this version added."""
    runs: list[RunRef] = field(default_factory=list)
    """Training runs that read this version."""


@dataclass(frozen=True)
class History:
    table: str
    latest: int | None
    commits: list[Commit]
    """Newest first, one page."""
    total: int
    offset: int
    limit: int


@dataclass(frozen=True)
class TaskDelta:
    """Rows of one task added and removed between two versions."""

    __pydantic_config__ = DOCUMENTED

    task: str
    added: int
    removed: int


@dataclass(frozen=True)
class Diff:
    """What ``to_version`` of ``table`` holds that ``from_version`` did not (added), and the reverse (removed)."""

    __pydantic_config__ = DOCUMENTED

    table: str
    from_version: int
    to_version: int
    added: int
    removed: int
    tasks: list[TaskDelta]
    batches_added: dict[str, int]
    """Added rows per ingestion batch."""
    samples_added: list[dict[str, Any]]
    samples_removed: list[dict[str, Any]]
    files_read: int
    """Data files the diff had to read (only those in one version and not the other)."""


def _timestamp(ms: Any) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(ms) / 1000, UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def list_tables(cfg: ClmConfig) -> list[TableInfo]:
    """Every lake table with its latest version, rows, files and last commit (Delta log only). Raises
    :class:`StoreDown` when the lake cannot be read."""
    out = []
    for name in lake.TABLES:
        uri = redact_url(lake.table_uri(cfg, name))
        table = open_table(cfg, name)
        if table is None:
            out.append(TableInfo(name, False, None, 0, 0, 0, None, None, uri))
            continue
        stats = file_stats(cfg, table)
        try:
            last = table.history(limit=1)
        except OSError as exc:
            raise lake_failed(cfg, exc) from None
        rows = int(pc.sum(stats["num_records"]).as_py() or 0) if stats.num_rows else 0
        size = int(pc.sum(stats["size_bytes"]).as_py() or 0) if stats.num_rows else 0
        out.append(TableInfo(name, True, table.version(), rows, stats.num_rows, size,
                             _timestamp(last[0].get("timestamp")) if last else None,
                             last[0].get("operation") if last else None, uri))  # fmt: skip
    return out


def table_history(cfg: ClmConfig, name: str, *, offset: int = 0, limit: int = 50) -> History:
    """One page of ``name``'s commits, newest first, each with the batches it added and the runs that read it.
    Raises :class:`NotFound` for an unknown table, :class:`StoreDown` when a store cannot be read."""
    table = open_table(cfg, name)
    if table is None:
        return History(name, None, [], 0, offset, limit)
    latest = table.version()
    try:
        entries = table.history(limit=offset + limit) if offset + limit <= latest + 1 else table.history()
    except OSError as exc:
        raise lake_failed(cfg, exc) from None
    entries = sorted(entries, key=lambda e: -int(e.get("version", -1)))[offset : offset + limit]
    versions = [int(e["version"]) for e in entries if "version" in e]
    batches = _batches_by_version(cfg, name, versions)
    runs = _runs_by_version(cfg, name, versions)
    commits = []
    for e in entries:
        v = int(e.get("version", -1))
        metrics = e.get("operationMetrics") or {}
        commits.append(Commit(
            version=v, timestamp=_timestamp(e.get("timestamp")), operation=str(e.get("operation", "")),
            mode=(e.get("operationParameters") or {}).get("mode"),
            rows_added=_int(metrics.get("num_added_rows")), files_added=_int(metrics.get("num_added_files")),
            files_removed=_int(metrics.get("num_removed_files")), batches=batches.get(v, []), runs=runs.get(v, []),
        ))  # fmt: skip
    return History(name, latest, commits, latest + 1, offset, limit)


def _int(value: Any) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


def _batches_by_version(cfg: ClmConfig, name: str, versions: list[int]) -> dict[int, list[str]]:
    column_name = BATCH_VERSION.get(name)
    if column_name is None or not versions:
        return {}
    column = getattr(IngestionBatch, column_name)
    count = {"raw": IngestionBatch.rows_in, "curated": IngestionBatch.rows_curated,
             "quarantine": IngestionBatch.rows_quarantined}[name]  # fmt: skip
    stmt = select(column, IngestionBatch.id).where(
        column.in_(versions), IngestionBatch.status == "committed", count > 0
    )
    if name == "raw":  # a file refused as a whole wrote nothing to raw
        stmt = stmt.where(IngestionBatch.error.is_(None))
    out: dict[int, list[str]] = {}
    with database(cfg) as s:
        for version, batch_id in s.execute(stmt.order_by(IngestionBatch.started_at)) if s is not None else []:
            out.setdefault(version, []).append(batch_id)
    return out


def _run_columns(name: str) -> list[str]:
    return {"curated": ["curated_version", "previous_curated_version"], "replay": ["replay_version"]}.get(name, [])


def _runs_by_version(cfg: ClmConfig, name: str, versions: list[int]) -> dict[int, list[RunRef]]:
    columns = _run_columns(name)
    if not columns or not versions:
        return {}
    clauses = [getattr(TrainingRun, c).in_(versions) for c in columns]
    out: dict[int, list[RunRef]] = {}
    with database(cfg) as s:
        rows = [] if s is None else s.scalars(select(TrainingRun).where(or_(*clauses)).order_by(TrainingRun.started_at))
        for run in rows:
            for c in columns:
                v = getattr(run, c)
                if v in versions:
                    out.setdefault(v, []).append(_run_ref(run, c))
    return out


def _run_ref(run: TrainingRun, role: str) -> RunRef:
    return RunRef(run.id, run.status, role, run.model_version, utc(run.started_at), utc(run.finished_at),
                  run.curated_version, run.previous_curated_version, run.replay_version)  # fmt: skip


def runs_reading(cfg: ClmConfig, name: str, version: int) -> list[RunRef]:
    """Training runs that read ``version`` of table ``name`` (curated: as their data, or as where their new rows
    start; replay: as their replay buffer), oldest first. Raises :class:`NotFound` for an unknown table or
    version."""
    open_table(cfg, name, version)
    return _runs_by_version(cfg, name, [version]).get(version, [])


def diff_versions(cfg: ClmConfig, name: str, from_version: int, to_version: int, *, samples: int = 5) -> Diff:
    """Rows added and removed from ``from_version`` to ``to_version`` of ``name``, per task and per batch, with up
    to ``samples`` of each. Raises :class:`NotFound` naming an unknown table or version."""
    samples = max(0, min(samples, MAX_SAMPLES))
    after = open_table(cfg, name, to_version)  # first: a page derives ``from`` from ``to``, so name ``to``
    before = open_table(cfg, name, from_version)
    if before is None or after is None:  # a table that exists now but vanished in between
        raise NotFound(f"lake table {name!r} has no version {from_version if before is None else to_version}")
    files_before, files_after = set(_files(cfg, before)), set(_files(cfg, after))
    only_before, only_after = sorted(files_before - files_after), sorted(files_after - files_before)
    keys = list(KEYS[name])
    columns = list(dict.fromkeys([*keys, "task", "batch_id", *SAMPLE_FIELDS]))
    old = read_columns(cfg, before, columns, files=only_before)
    new = read_columns(cfg, after, columns, files=only_after)
    # A row of a rewritten file that is in the other version's rewritten files is in both versions.
    added = new.join(old.select(keys), keys=keys, join_type="left anti") if old.num_rows else new
    removed = old.join(new.select(keys), keys=keys, join_type="left anti") if new.num_rows else old
    add_tasks, del_tasks = _counts(added, "task"), _counts(removed, "task")
    tasks = [TaskDelta(t, add_tasks.get(t, 0), del_tasks.get(t, 0)) for t in sorted(set(add_tasks) | set(del_tasks))]
    return Diff(
        table=name, from_version=from_version, to_version=to_version, added=added.num_rows, removed=removed.num_rows,
        tasks=tasks, batches_added=dict(sorted(_counts(added, "batch_id").items())),
        samples_added=_samples(added, samples), samples_removed=_samples(removed, samples),
        files_read=len(only_before) + len(only_after),
    )  # fmt: skip


def _files(cfg: ClmConfig, table) -> list[str]:
    try:
        return list(table.to_pyarrow_dataset().files)
    except OSError as exc:
        raise lake_failed(cfg, exc) from None


def _counts(table: pa.Table, column: str) -> dict[str, int]:
    if not table.num_rows:
        return {}
    values = pc.fill_null(table[column], "(none)") if pa.types.is_string(table[column].type) else table[column]
    return {str(d["values"]): int(d["counts"]) for d in pc.value_counts(values).to_pylist()}


def _samples(table: pa.Table, n: int) -> list[dict[str, Any]]:
    if not n or not table.num_rows:
        return []
    rows = table.sort_by([(k, "ascending") for k in ("task", *[c for c in ("id", "batch_id", "line")
                                                              if c in table.column_names])]).slice(0, n)  # fmt: skip
    rows = rows.select([c for c in SAMPLE_FIELDS if c in rows.column_names])
    out = []
    for row in rows.to_pylist():
        out.append({k: (v[:SAMPLE_CHARS] + "…" if isinstance(v, str) and len(v) > SAMPLE_CHARS else v)
                    for k, v in row.items()})  # fmt: skip
    return out


@dataclass(frozen=True)
class DataVersionsPage:
    """Everything the Data versions screen shows; each part is also a REST route (same function)."""

    generated_at: datetime
    lake_uri: str
    tables: list[TableInfo]
    table: str
    """The table whose history and diff are shown."""
    history: History | None
    diff: Diff | None
    problems: list[StoreDown]
    bad_filter: BadFilter | None = None
    not_found: str | None = None
    """An unknown table or version asked for, in words."""

    @property
    def status(self) -> int:
        return 404 if self.not_found else 422 if self.bad_filter else 200


def build_data_versions(cfg: ClmConfig, args: Mapping[str, str] | None = None) -> DataVersionsPage:
    """The Data versions screen for the query ``args`` (``table``, default curated; ``offset`` of its history;
    ``from`` and ``to`` of the diff, default the latest version against the one before). Never raises for a store
    that cannot be read, an unknown table or version, or a bad argument: the page says which."""
    args = args or {}
    problems: list[StoreDown] = []
    bad = not_found = None
    tables: list[TableInfo] = []
    history = diff = None
    name = (args.get("table") or "curated")[:64]
    try:
        offset = int_arg(args, "offset", 0, 0, 10_000_000)
        start = int_arg(args, "from", -1, 0, MAX_VERSION) if args.get("from") else None
        end = int_arg(args, "to", -1, 0, MAX_VERSION) if args.get("to") else None
    except BadFilter as exc:
        bad, offset, start, end = exc, 0, None, None
    try:
        tables = list_tables(cfg)
        history = table_history(cfg, name, offset=offset, limit=PAGE_SIZE)
        latest = history.latest
        if latest is not None and (start is not None or end is not None or latest > 0):
            end = latest if end is None else end
            start = max(0, end - 1) if start is None else start
            diff = diff_versions(cfg, name, start, end)
    except NotFound as exc:
        not_found = str(exc)
    except StoreDown as down:
        problems.append(down)
    return DataVersionsPage(datetime.now(UTC), redact_url(cfg.lake_uri), tables, name, history, diff, problems,
                            bad, not_found)  # fmt: skip


__all__ = [
    "Commit", "DataVersionsPage", "Diff", "History", "NotFound", "RunRef", "StoreDown", "TableInfo", "TaskDelta",
    "build_data_versions", "diff_versions", "list_tables", "runs_reading", "table_history",
]  # fmt: skip
