"""Reading clm's database and the lake's Delta tables for the reports, the way every screen must: never creating
a store, and turning a store that cannot be read into :class:`~clm_lib.reporting.stores.StoreDown` (which store,
since when this process has failed to read it).

A missing SQLite file is a fresh install (nothing written yet), not an outage. Lake reads take what the Delta log
says where they can (row counts and sizes per file) and read only the columns asked for.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy.orm import Session

from clm_lib.config import ClmConfig
from clm_lib.reporting.params import NotFound
from clm_lib.reporting.schema import DOCUMENTED
from clm_lib.reporting.stores import StoreDown, first_line, missing_sqlite, reading, redact_url

LAKE = "the lake"
_lake_down_since: list[datetime] = []
_lake_lock = threading.Lock()


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


def value_counts(values: pa.ChunkedArray) -> dict[str, int]:
    """How often each value occurs."""
    if not len(values):
        return {}
    return {str(d["values"]): int(d["counts"]) for d in pc.value_counts(values).to_pylist()}


def as_datetime(value: Any) -> datetime | None:
    """A Delta log time (milliseconds since the epoch) or a read timestamp, in UTC."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromtimestamp(int(value) / 1000, UTC)  # the Delta log's milliseconds since the epoch


@dataclass(frozen=True)
class StoreProblem:
    """A store that could not be read, as data: the numbers that come from it are left out."""

    __pydantic_config__ = DOCUMENTED

    store: str
    """Which store: clm's database, the lake, MLflow."""
    problem: str
    """Why (addresses without credentials)."""
    since: datetime
    """Since when this process has failed to read it."""

    @classmethod
    def of(cls, exc: StoreDown) -> StoreProblem:
        return cls(exc.store, exc.problem, exc.since)
