"""Restoring a lake table to an earlier version, and which versions must outlive maintenance.

A restore is a new commit whose content equals the old version (``DeltaTable.restore``): nothing is rewritten and
the versions in between stay readable, so a restore is itself undone by restoring again. Training after a restore
reads the restored rows, since every reader takes the latest version unless told otherwise.

Ingestion dedupes on the content ids present in the latest ``curated`` version, so rows a restore took out can be
ingested again, but only from a new file: a file already ingested is a committed batch and is not read twice.

A version is protected when a training run that produced a registered model version read it, when a deployed
model (champion, previous champion, any rollback target) or one of its ancestors was trained on it, or when a run
still under way reads it. :mod:`clm_lib.data.maintenance` never vacuums the files of a protected version.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from deltalake.exceptions import DeltaError
from sqlalchemy import or_, select, text

from clm_lib import audit
from clm_lib.config import ClmConfig
from clm_lib.data import lake
from clm_lib.db import session_scope
from clm_lib.db.models import Deployment, TrainingRun
from clm_lib.errors import ClmError

RUN_COLUMNS: dict[str, tuple[str, ...]] = {
    "curated": ("curated_version", "previous_curated_version"),
    "replay": ("replay_version",),
}
"""The ``training_runs`` columns naming a version of each table a run read (curated_rows_since reads both)."""


class UnknownVersion(ClmError):
    """A table or version that does not exist; the message names it."""


@dataclass(frozen=True)
class Restored:
    """What a restore did."""

    table: str
    restored_version: int
    """The version whose content the table now holds."""
    from_version: int
    """The latest version before the restore."""
    new_version: int
    """The commit the restore wrote."""
    files_restored: int
    files_removed: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_version(cfg: ClmConfig, table: str, version: int) -> int:
    """The latest version of ``table``; raises :class:`UnknownVersion` naming an unknown table or version."""
    if table not in lake.TABLES:
        raise UnknownVersion(f"unknown lake table {table!r} (clm keeps: {', '.join(lake.TABLES)})")
    latest = lake.table_version(cfg, table)
    if latest is None:
        raise UnknownVersion(f"lake table {table!r} has no version {version}: it was never written")
    if not 0 <= version <= latest:
        raise UnknownVersion(f"lake table {table!r} has no version {version} (versions 0 to {latest})")
    return latest


def restore(cfg: ClmConfig, table: str, version: int, *, actor: str, reason: str) -> Restored:
    """Make ``version`` of ``table`` its content again, as a new version, and audit it (``data.restored``).

    Raises :class:`UnknownVersion` for an unknown table or version, :class:`ClmError` without a reason or when the
    version's files were vacuumed."""
    reason = (reason or "").strip()
    if not reason:
        raise ClmError("a restore needs a reason (kept in the audit log)")
    latest = check_version(cfg, table, version)
    dt = lake._open(cfg, table)
    with session_scope(cfg.database_url) as s:
        s.execute(text("SELECT 1"))  # a database that is down fails here, before the lake changes unaudited
        try:
            metrics = dt.restore(version)
        except DeltaError as exc:  # a vacuumed version: its files are gone
            raise ClmError(f"lake table {table!r} cannot be restored to version {version}: {exc}") from None
        result = Restored(table, version, latest, dt.version(), int(metrics.get("numRestoredFile", 0)),
                          int(metrics.get("numRemovedFile", 0)))  # fmt: skip
        audit.record(s, action="data.restored", target=f"lake:{table}", actor=actor, from_value=str(latest),
                     to_value=str(version), reason=reason, details=result.as_dict())  # fmt: skip
    return result


def _deployed_versions(session) -> set[str]:
    rows = session.execute(select(Deployment.version, Deployment.from_version)).all()
    return {v for pair in rows for v in pair if v}


def _lineage(runs_by_version: dict[str, TrainingRun], versions: set[str]) -> set[str]:
    """``versions`` and every model version they descend from (``parent_model_version``)."""
    seen: set[str] = set()
    todo = list(versions)
    while todo:
        v = todo.pop()
        if v in seen:
            continue
        seen.add(v)
        run = runs_by_version.get(v)
        if run is not None and run.parent_model_version:
            todo.append(run.parent_model_version)
    return seen


def protected_versions(cfg: ClmConfig, table: str) -> dict[int, list[str]]:
    """Versions of ``table`` that maintenance must keep readable, each with why (newest reasons last)."""
    if table not in lake.TABLES:
        raise UnknownVersion(f"unknown lake table {table!r} (clm keeps: {', '.join(lake.TABLES)})")
    columns = RUN_COLUMNS.get(table, ())
    if not columns:
        return {}
    out: dict[int, list[str]] = {}
    with session_scope(cfg.database_url) as s:
        runs = list(s.scalars(select(TrainingRun).where(
            or_(TrainingRun.model_version.is_not(None), TrainingRun.status == "running"))))  # fmt: skip
        by_version = {r.model_version: r for r in runs if r.model_version}
        deployed = _lineage(by_version, _deployed_versions(s))
        for run in runs:
            if run.model_version in deployed:
                why = f"model version {run.model_version} (deployed, or a deployed version's ancestor)"
            elif run.model_version:
                why = f"registered model version {run.model_version}"
            else:
                why = f"training run {run.id} under way"
            for c in columns:
                v = getattr(run, c)
                if v is not None:
                    out.setdefault(int(v), []).append(f"{why} ({c})")
    return dict(sorted(out.items()))
