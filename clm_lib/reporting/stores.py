"""How the screens read clm's stores: never creating one, never crashing on one, never showing a password."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError


def missing_sqlite(url: str) -> str | None:
    """The path of a SQLite database URL whose file does not exist yet, else None."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return None
    if not parsed.drivername.startswith("sqlite") or parsed.database in (None, "", ":memory:"):
        return None
    path = Path(parsed.database)
    return None if path.exists() else str(path)


def redact_url(url: str) -> str:
    """The URL without its password, fit to show on a page."""
    return re.sub(r"//([^:/@]*):[^@/]*@", r"//\1:***@", url)


def first_line(exc: BaseException) -> str:
    """The first line of an error (a driver's own message when SQLAlchemy wraps one), short enough for a banner."""
    inner = getattr(exc, "orig", None) or exc
    text = str(inner).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def utc(value: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes even for timezone-aware columns; clm writes UTC.
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
