"""audit hash chain

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07

Adds ``prev_hash`` / ``hash`` to ``audit_log``, chains the entries already there (so ``clm audit verify`` passes on
an upgraded installation), and makes the table append-only with a trigger refusing UPDATE and DELETE (and TRUNCATE
on PostgreSQL). On SQLite a later migration that rebuilds ``audit_log`` in batch mode drops its triggers with the
old table: such a migration must create them again (``_SQLITE_TRIGGERS``).

Chaining existing entries needs the audit key: the caller hands it over (``clm_lib.db.upgrade(url, audit_key=...)``,
which ``clm init`` does); the key is where the application keeps it, so it is not looked up here.
"""

import hashlib
import hmac
import json
from datetime import UTC

import sqlalchemy as sa
from alembic import context, op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

_PG_FUNCTION = """
CREATE FUNCTION clm_audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP USING ERRCODE = 'insufficient_privilege';
END
$$
"""
_PG_TRIGGERS = (
    "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log "
    "FOR EACH ROW EXECUTE FUNCTION clm_audit_log_append_only()",
    "CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log "
    "FOR EACH STATEMENT EXECUTE FUNCTION clm_audit_log_append_only()",
)
_SQLITE_TRIGGERS = (
    "CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log "
    "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: UPDATE refused'); END",
    "CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log "
    "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: DELETE refused'); END",
)


# A frozen copy of the hash chain's format as clm_lib/audit.py wrote it when this migration was made (GENESIS,
# canonical_time, entry_hash). A migration must not import application code: a later change to audit.py would
# silently change what this old migration writes. A change of the format is a new migration that re-chains the log.
_GENESIS = "0" * 64
_HASHED = ("actor", "action", "target", "from_value", "to_value", "reason", "details")


def _entry_hash(key: bytes, row, prev_hash: str) -> str:
    """HMAC-SHA256 of an entry's fields and ``prev_hash``, serialized exactly as ``clm_lib.audit`` did in 0005."""
    # SQLite hands back naive datetimes for timezone-aware columns; clm writes UTC, so naive means UTC.
    at = row.at.replace(tzinfo=UTC) if row.at.tzinfo is None else row.at.astimezone(UTC)
    fields = {name: getattr(row, name) for name in _HASHED}
    fields |= {"at": at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "prev_hash": prev_hash}
    blob = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hmac.new(key, blob.encode(), hashlib.sha256).hexdigest()


def _chain_existing_entries(key: bytes | None) -> None:
    log = sa.table(
        'audit_log',
        sa.column('id', sa.Integer()),
        sa.column('at', sa.DateTime(timezone=True)),
        sa.column('actor', sa.String()),
        sa.column('action', sa.String()),
        sa.column('target', sa.String()),
        sa.column('from_value', sa.String()),
        sa.column('to_value', sa.String()),
        sa.column('reason', sa.Text()),
        sa.column('details', sa.JSON()),
        sa.column('prev_hash', sa.String()),
        sa.column('hash', sa.String()),
    )
    bind = op.get_bind()
    rows = bind.execute(sa.select(log).order_by(log.c.id)).all()
    prev = _GENESIS
    for row in rows:
        digest = _entry_hash(key, row, prev)
        bind.execute(log.update().where(log.c.id == row.id).values(prev_hash=prev, hash=digest))
        prev = digest


def upgrade() -> None:
    # Refused before any DDL: SQLite does not roll DDL back, a failure half-way would leave half of this migration.
    entries = op.get_bind().scalar(sa.text("SELECT count(*) FROM audit_log"))
    key = context.config.attributes.get("audit_key")
    if entries and not key:
        raise RuntimeError(
            f"audit_log holds {entries} entries written before the hash chain: chaining them needs the audit key, "
            "run the upgrade with it (`clm init`, or clm_lib.db.upgrade(url, audit_key=clm_lib.audit.audit_key()))"
        )
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.add_column(sa.Column('prev_hash', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('hash', sa.String(length=64), nullable=True))
    _chain_existing_entries(key)
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.alter_column('prev_hash', existing_type=sa.String(length=64), nullable=False)
        batch_op.alter_column('hash', existing_type=sa.String(length=64), nullable=False)
        batch_op.create_index(batch_op.f('ix_audit_log_prev_hash'), ['prev_hash'], unique=True)

    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute(_PG_FUNCTION)
        for statement in _PG_TRIGGERS:
            op.execute(statement)
    elif dialect == "sqlite":
        for statement in _SQLITE_TRIGGERS:
            op.execute(statement)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_truncate ON audit_log")
        op.execute("DROP TRIGGER IF EXISTS audit_log_append_only ON audit_log")
        op.execute("DROP FUNCTION IF EXISTS clm_audit_log_append_only()")
    elif dialect == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_delete")
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_update")
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_log_prev_hash'))
        batch_op.drop_column('hash')
        batch_op.drop_column('prev_hash')
