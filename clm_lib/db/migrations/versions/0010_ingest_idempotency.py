"""idempotency keys of pushed ingestion

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07

``ingest_idempotency``: one row per ``Idempotency-Key`` of ``POST /clm/api/v1/ingest``, with the body's sha256
and the stored answer a retry gets back (clm_lib/data/push.py).
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ingest_idempotency",
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("body_sha256", sa.String(length=64), nullable=False),
        sa.Column("actor", sa.String(length=250), nullable=False),
        sa.Column("batch_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("response", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("key"),
    )
    with op.batch_alter_table("ingest_idempotency", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ingest_idempotency_created_at"), ["created_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("ingest_idempotency", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ingest_idempotency_created_at"))

    op.drop_table("ingest_idempotency")
