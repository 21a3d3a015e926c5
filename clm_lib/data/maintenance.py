"""Lake maintenance: compaction (``optimize``) and ``vacuum`` with a retention that keeps what models depend on.

Every ingest commits a few small files; compaction rewrites them into larger ones as a new version (the content
is unchanged and older versions stay readable). Vacuum deletes data files no current version references and no
version within ``lake.vacuum_retention_hours`` (config) referenced: after it, those versions can no longer be read.

A version in :func:`clm_lib.data.versions.protected_versions` (read by a registered or deployed model, or by a run
under way) keeps its files whatever the retention: they are passed to Delta's vacuum as ``keep_versions``, which
keeps exactly the files those versions reference, so an unprotected version between two protected ones can still
go. Delta refuses a retention shorter than the table's ``delta.deletedFileRetentionDuration`` (a week by default)
unless told not to enforce it: clm turns enforcement off only when the configured retention is shorter, since the
protected versions are what must survive and they are kept explicitly.

Vacuum reads the protected versions from clm's database first: when it cannot, it deletes nothing. Vacuum removes
data files only, never the Delta log, so ``history`` still lists a vacuumed version; reading it
fails, naming the missing file.
"""

from __future__ import annotations

import logging
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from deltalake.exceptions import DeltaError

from clm_lib.config import ClmConfig
from clm_lib.data import id_index, lake
from clm_lib.data.versions import UnknownVersion, protected_versions
from clm_lib.errors import ClmError

log = logging.getLogger(__name__)

DEFAULT_TABLE_RETENTION_HOURS = 168
"""Delta's own minimum when the table does not set ``delta.deletedFileRetentionDuration``."""
_UNITS = {"hour": 1, "hours": 1, "day": 24, "days": 24, "week": 168, "weeks": 168}


@dataclass(frozen=True)
class Compacted:
    table: str
    version: int | None
    """The commit compaction wrote; None when there was nothing to compact (no commit)."""
    files_added: int
    files_removed: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Vacuumed:
    table: str
    dry_run: bool
    retention_hours: int
    protected: dict[int, list[str]]
    """Versions whose files were kept, with why."""
    removed: list[str] = field(default_factory=list)
    """Data files deleted (a dry run: that would be deleted), relative to the table."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _table(cfg: ClmConfig, table: str):
    if table not in lake.TABLES:
        raise UnknownVersion(f"unknown lake table {table!r} (clm keeps: {', '.join(lake.TABLES)})")
    return lake._open(cfg, table)


def optimize(cfg: ClmConfig, table: str) -> Compacted:
    """Compact ``table``'s small files into files of about ``lake.optimize_target_mb``. A table never written, or
    already compact, is left as it is."""
    dt = _table(cfg, table)
    if dt is None:
        return Compacted(table, None, 0, 0)
    before = dt.version()
    try:
        metrics = dt.optimize.compact(target_size=cfg.lake.optimize_target_mb * 1024**2)
    except (DeltaError, OSError) as exc:
        raise ClmError(f"lake table {table!r}: compaction failed: {exc}") from None
    after = dt.version()
    result = Compacted(table, after if after != before else None, int(metrics.get("numFilesAdded", 0)),
                       int(metrics.get("numFilesRemoved", 0)))  # fmt: skip
    log.info("lake %s: compacted %s", table, result)
    if table == "curated":
        id_index.compact(cfg)  # the index dedupe reads beside curated gains small files at the same pace
    return result


def table_minimum_hours(configuration: dict[str, str | None]) -> int:
    """The table's ``delta.deletedFileRetentionDuration`` in hours (``interval 7 days``), Delta's week if unset
    or unreadable."""
    raw = configuration.get("delta.deletedFileRetentionDuration") or ""
    m = re.fullmatch(r"\s*interval\s+(\d+)\s+(\w+)\s*", raw.lower())
    if not m or m.group(2) not in _UNITS:
        return DEFAULT_TABLE_RETENTION_HOURS
    return int(m.group(1)) * _UNITS[m.group(2)]


def vacuum(cfg: ClmConfig, table: str, *, dry_run: bool = True) -> Vacuumed:
    """Delete ``table``'s data files older than the retention that neither the latest version nor a protected one
    references (``dry_run``: only list them)."""
    dt = _table(cfg, table)
    hours = cfg.lake.vacuum_retention_hours
    protected = protected_versions(cfg, table)
    if dt is None:
        return Vacuumed(table, dry_run, hours, {})
    latest = dt.version()
    # A protected version newer than the table (a run that read a table since recreated) keeps nothing: skip it.
    keep = [v for v in protected if v <= latest]
    enforce = hours >= table_minimum_hours(dt.metadata().configuration)
    try:
        removed = dt.vacuum(retention_hours=hours, dry_run=dry_run, enforce_retention_duration=enforce,
                            keep_versions=keep or None)  # fmt: skip
    except (DeltaError, OSError) as exc:
        raise ClmError(f"lake table {table!r}: vacuum failed: {exc}") from None
    result = Vacuumed(table, dry_run, hours, {v: protected[v] for v in keep}, sorted(removed))
    log.info("lake %s: vacuum %s %d file(s) (retention %d h, kept versions %s)", table,
             "would remove" if dry_run else "removed", len(removed), hours, keep)  # fmt: skip
    return result
