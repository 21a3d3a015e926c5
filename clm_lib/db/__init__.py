"""clm's state database: engine, sessions and migrations."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).parent / "migrations"


def _ensure_sqlite_folder(url: str) -> None:
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)


@lru_cache(maxsize=8)
def get_engine(url: str) -> Engine:
    _ensure_sqlite_folder(url)
    if url.startswith("sqlite:///"):
        engine = create_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # pragma: no cover - trivial
            # Airflow task processes, the API server and the CLI write concurrently.
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True)



def missing_sqlite(url: str) -> str | None:
    """The path of a SQLite database URL whose file does not exist yet, else None: readers must not create it."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return None
    if not parsed.drivername.startswith("sqlite") or parsed.database in (None, "", ":memory:"):
        return None
    path = Path(parsed.database)
    return None if path.exists() else str(path)


def first_line(exc: BaseException) -> str:
    """The first line of an error (a driver's own message when SQLAlchemy wraps one), short enough for a banner.

    A URL quoted in it (an MLflow or HTTP client error names the address it called) loses its password and tokens.
    """
    from clm_lib.redaction import redact_text

    inner = getattr(exc, "orig", None) or exc
    text = str(inner).strip().splitlines()
    return redact_text(text[0])[:300] if text else type(exc).__name__

@contextmanager
def session_scope(url: str) -> Iterator[Session]:
    """A transaction: committed on success, rolled back on any error."""
    session = sessionmaker(get_engine(url), expire_on_commit=False)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def upgrade(url: str, revision: str = "head", *, audit_key: bytes | None = None) -> None:
    """Bring the schema to ``revision`` with Alembic (idempotent).

    ``audit_key`` (:func:`clm_lib.audit.audit_key`) is needed only to upgrade a database whose audit log has entries
    from before the hash chain (migration 0005 chains them); migrations import no application code to find it.
    """
    from alembic import command
    from alembic.config import Config

    _ensure_sqlite_folder(url)
    cfg = Config(attributes={"audit_key": audit_key})
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    command.upgrade(cfg, revision)
