"""Models and Alembic migrations describe the same schema, on SQLite and PostgreSQL."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from clm_lib import audit
from clm_lib.db import get_engine, session_scope, upgrade
from clm_lib.db.models import AuditEntry, Base


def test_migrations_match_models(db_url):
    engine = get_engine(db_url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []
    assert set(Base.metadata.tables) <= set(inspect(engine).get_table_names())


def test_upgrade_is_idempotent_and_round_trips(db_url):
    upgrade(db_url)
    with session_scope(db_url) as s:
        audit.record(s, actor="tester", action="alias.champion", target="m@champion", to_value="1",
                     details={"why": ["json", "survives"]})
    with session_scope(db_url) as s:
        entry = s.query(AuditEntry).one()
        assert entry.details == {"why": ["json", "survives"]}
        assert entry.at.tzinfo is not None or db_url.startswith("sqlite")
