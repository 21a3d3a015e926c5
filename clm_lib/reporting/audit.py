"""The "Reports & audit" screen and ``/clm/api/v1/audit``: the whole audit log, filtered, a page at a time or
exported, and whether its hash chain is intact.

One function per question, used by the screen and the REST routes alike: :func:`page` (filters + paging),
:func:`export_rows` / :func:`csv_lines` / :func:`json_chunks` (every matching entry, streamed),
:func:`verify_status` (:func:`clm_lib.audit.verify`). Reading never creates a store: a missing or unreadable
database is a :class:`~clm_lib.reporting.stores.StoreDown` that names it and says since when.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, func, select, true
from sqlalchemy.orm import Session

from clm_lib import audit
from clm_lib.config import ClmConfig
from clm_lib.db.models import AuditEntry
from clm_lib.reporting.stores import reading, utc

MAX_TEXT = 250
"""Longest filter value: the longest actor, action or target the log can hold."""
EXPORT_BATCH = 500
COLUMNS = ("id", "at", "actor", "action", "target", "from_value", "to_value", "reason", "details", "prev_hash", "hash")
"""Columns of an export, in order: everything the chain's hash covers, and the chain itself."""
_VERSION_TARGET = re.compile(r"^[^/@:]+/([0-9]{1,32})$")
_ID_TARGET = re.compile(r"^(serving_feedback|ingestion_batch|serving_key):(.{1,64})$")


class FilterError(ValueError):
    """A filter value that cannot be used; ``field`` names it (the REST API answers 422, the screen says it)."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(f"{field}: {message}")


@dataclass(frozen=True)
class AuditFilter:
    """Which entries to show. Text filters ignore case: ``actor`` and ``target`` match anywhere in the value,
    ``action`` at its start (``alias.`` matches every alias move). Times are UTC, ``since`` inclusive, ``until``
    exclusive."""

    actor: str | None = None
    action: str | None = None
    target: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def __post_init__(self) -> None:
        for name in ("actor", "action", "target"):
            value = getattr(self, name)
            if value is not None:
                value = value.strip() or None
                object.__setattr__(self, name, value)
            if value is not None and len(value) > MAX_TEXT:
                raise FilterError(name, f"at most {MAX_TEXT} characters")
        for name in ("since", "until"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, utc(value))
        if self.since and self.until and self.until <= self.since:
            raise FilterError("until", "must be later than since")

    @classmethod
    def parse(cls, args: Mapping[str, str]) -> AuditFilter:
        """From a query string (the screen's form): empty fields are no filter; times are ISO 8601 dates or
        date-times (a date means its midnight, UTC unless an offset is given)."""
        times = {}
        for name in ("since", "until"):
            raw = (args.get(name) or "").strip()
            if raw:
                try:
                    times[name] = datetime.fromisoformat(raw)
                except ValueError:
                    raise FilterError(name, "not a date or date-time (YYYY-MM-DD or YYYY-MM-DDTHH:MM)") from None
        return cls(actor=args.get("actor"), action=args.get("action"), target=args.get("target"), **times)

    @property
    def active(self) -> bool:
        return any(getattr(self, f) is not None for f in ("actor", "action", "target", "since", "until"))

    def query(self) -> dict[str, str]:
        """The filter as query-string values (for links to the next page and to the exports)."""
        out = {f: getattr(self, f) for f in ("actor", "action", "target") if getattr(self, f)}
        out |= {f: getattr(self, f).isoformat() for f in ("since", "until") if getattr(self, f)}
        return out

    def where(self) -> ColumnElement[bool]:
        clauses = []
        if self.actor:
            clauses.append(AuditEntry.actor.icontains(self.actor, autoescape=True))
        if self.action:
            clauses.append(AuditEntry.action.istartswith(self.action, autoescape=True))
        if self.target:
            clauses.append(AuditEntry.target.icontains(self.target, autoescape=True))
        # Stored times are naive UTC on SQLite and aware on PostgreSQL; compare naive UTC values on both.
        if self.since:
            clauses.append(AuditEntry.at >= self.since.replace(tzinfo=None))
        if self.until:
            clauses.append(AuditEntry.at < self.until.replace(tzinfo=None))
        return and_(true(), *clauses)


@dataclass(frozen=True)
class AuditRow:
    """One entry as the screen and the API show it, with what it points at in other screens."""

    id: int
    at: datetime | None
    actor: str
    action: str
    target: str
    from_value: str | None
    to_value: str | None
    reason: str
    details: dict[str, Any]
    version: str | None = None
    """The model version the entry is about (its report page), when it names one."""
    deployment_id: int | None = None
    feedback_id: int | None = None
    batch_id: str | None = None


@dataclass(frozen=True)
class AuditPage:
    """One page of the filtered log, newest first."""

    items: list[AuditRow]
    total: int
    offset: int
    limit: int
    filter: AuditFilter = field(default_factory=AuditFilter)
    actions: list[str] = field(default_factory=list)
    """Every action the log holds (the screen offers them as filter values)."""

    @property
    def next_offset(self) -> int | None:
        return self.offset + self.limit if self.offset + self.limit < self.total else None

    @property
    def prev_offset(self) -> int | None:
        return max(0, self.offset - self.limit) if self.offset > 0 else None


def row(entry: AuditEntry) -> AuditRow:
    details = entry.details if isinstance(entry.details, dict) else {}
    version = None
    if entry.action.startswith("alias."):
        version = entry.to_value or entry.from_value
    elif m := _VERSION_TARGET.match(entry.target):
        version = m.group(1)
    dep = details.get("deployment_id")
    ids = {}
    if m := _ID_TARGET.match(entry.target):
        ids[m.group(1)] = m.group(2)
    feedback = ids.get("serving_feedback")
    return AuditRow(
        id=entry.id,
        at=utc(entry.at),
        actor=entry.actor,
        action=entry.action,
        target=entry.target,
        from_value=entry.from_value,
        to_value=entry.to_value,
        reason=entry.reason or "",
        details=details,
        version=version if version and version.isdigit() else None,
        deployment_id=dep if isinstance(dep, int) and not isinstance(dep, bool) else None,
        feedback_id=int(feedback) if feedback and feedback.isdigit() else None,
        batch_id=ids.get("ingestion_batch"),
    )


def page(cfg: ClmConfig, flt: AuditFilter | None = None, *, offset: int = 0, limit: int = 50) -> AuditPage:
    """Entries matching ``flt``, newest first, ``limit`` of them from ``offset``."""
    flt = flt or AuditFilter()
    with reading(cfg.database_url) as s:
        return page_of(s, flt, offset=offset, limit=limit)


def page_of(session: Session, flt: AuditFilter, *, offset: int = 0, limit: int = 50) -> AuditPage:
    where = flt.where()
    total = session.scalar(select(func.count(AuditEntry.id)).where(where)) or 0
    stmt = select(AuditEntry).where(where).order_by(AuditEntry.id.desc()).offset(offset).limit(limit)
    items = [row(e) for e in session.scalars(stmt)]
    actions = list(session.scalars(select(AuditEntry.action).distinct().order_by(AuditEntry.action)))
    return AuditPage(items, int(total), offset, limit, flt, actions)


def count(cfg: ClmConfig, flt: AuditFilter | None = None) -> int:
    """How many entries match: also the check, before an export starts streaming, that the database answers."""
    with reading(cfg.database_url) as s:
        return int(s.scalar(select(func.count(AuditEntry.id)).where((flt or AuditFilter()).where())) or 0)


def export_rows(cfg: ClmConfig, flt: AuditFilter | None = None) -> Iterator[dict[str, Any]]:
    """Every matching entry, oldest first (the chain's order), read in batches: a generator that holds a
    database session until it is exhausted or closed."""
    where = (flt or AuditFilter()).where()
    with reading(cfg.database_url) as s:
        stmt = select(AuditEntry).where(where).order_by(AuditEntry.id).execution_options(yield_per=EXPORT_BATCH)
        for e in s.scalars(stmt):
            yield {
                "id": e.id, "at": audit.canonical_time(e.at), "actor": e.actor, "action": e.action,
                "target": e.target, "from_value": e.from_value, "to_value": e.to_value, "reason": e.reason or "",
                "details": e.details if isinstance(e.details, dict) else {}, "prev_hash": e.prev_hash, "hash": e.hash,
            }  # fmt: skip


def _cell(value: Any) -> str:
    if value is None:
        return ""
    text = json.dumps(value, sort_keys=True, ensure_ascii=False) if isinstance(value, dict) else str(value)
    # A spreadsheet runs a cell that starts with one of these as a formula (CSV injection): make it text.
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def csv_lines(rows: Iterator[dict[str, Any]]) -> Iterator[str]:
    """A header, then one CSV line per entry."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    for r in rows:
        writer.writerow([_cell(r[c]) for c in COLUMNS])
        if buf.tell() > 64 * 1024:
            yield buf.getvalue()
            buf.seek(0)
            buf.truncate()
    yield buf.getvalue()


def json_chunks(rows: Iterator[dict[str, Any]]) -> Iterator[str]:
    """One JSON array of entries, in pieces."""
    yield "["
    for i, r in enumerate(rows):
        yield ("," if i else "") + "\n" + json.dumps(r, ensure_ascii=False, sort_keys=True)
    yield "\n]\n"


@dataclass(frozen=True)
class VerifyStatus:
    """The chain's state, as :func:`clm_lib.audit.verify` found it, and when it was checked."""

    ok: bool
    checked: int
    head: str | None
    broken_id: int | None
    problem: str | None
    message: str
    checked_at: datetime

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["checked_at"] = self.checked_at.isoformat()
        return out


def verify_status(cfg: ClmConfig) -> VerifyStatus:
    """Walk the whole chain (:func:`clm_lib.audit.verify`) with clm's audit key."""
    with reading(cfg.database_url) as s:
        result = audit.verify(s, audit.audit_key(cfg.home))
    return VerifyStatus(result.ok, result.checked, result.head, result.broken_id, result.problem, result.message,
                        datetime.now(UTC))  # fmt: skip
