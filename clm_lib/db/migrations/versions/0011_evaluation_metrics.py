"""every task metric of an evaluation

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07

``evaluations.metrics``: per task, every task metric and which one is primary (clm_lib/evaluation/stored_metrics.py).
Nullable: the evaluations written before it scored exact match only, which their ``scores`` already hold.
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("evaluations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("metrics", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("evaluations", schema=None) as batch_op:
        batch_op.drop_column("metrics")
