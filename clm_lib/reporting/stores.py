"""How the screens read clm's stores: never creating one, never crashing on one, never showing a password."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from clm_lib.db import first_line, missing_sqlite, session_scope
from clm_lib.errors import ClmError
from clm_lib.redaction import redact_url as _redact_url


def redact_url(url: str) -> str:
    """The URL without its password or tokens, fit to show on a page (:func:`clm_lib.redaction.redact_url`)."""
    return _redact_url(url)


def utc(value: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes even for timezone-aware columns; clm writes UTC.
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class StoreDown(ClmError):
    """A store a screen or a REST route reads cannot be read: which one, since when (as this process saw it), why."""

    def __init__(self, store: str, problem: str, since: datetime):
        self.store, self.problem, self.since = store, problem, since
        super().__init__(f"{store} cannot be read (since {since:%Y-%m-%d %H:%M:%S} UTC): {problem}")


_DOWN_SINCE: dict[str, datetime] = {}
DATABASE = "clm's database"


def down(store: str, problem: str) -> StoreDown:
    """The error for ``store`` being unreadable, dated from the first failure this process saw since it last
    answered."""
    since = _DOWN_SINCE.setdefault(store, datetime.now(UTC))
    return StoreDown(store, problem, since)


def up(store: str) -> None:
    """``store`` answered: its next failure starts a new "since"."""
    _DOWN_SINCE.pop(store, None)


@contextmanager
def reading(url: str) -> Iterator[Session]:
    """A session on clm's database for reading, or :class:`StoreDown`: never creates a SQLite file that is not
    there, never lets a driver error through."""
    missing = missing_sqlite(url)
    if missing:
        raise down(DATABASE, f"there is no database at {missing} yet; `clm init` creates it")
    try:
        with session_scope(url) as session:
            yield session
    except SQLAlchemyError as exc:
        raise down(DATABASE, f"{first_line(exc)}. Run `clm init` to create or migrate it") from None
    _DOWN_SINCE.pop(DATABASE, None)
