"""configuration as numbered revisions edited from the control panel

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07

Adds ``config_revisions`` (the run-time-mutable configuration, one row per version: clm_lib/config_store.py) and the
revision a training run and a deployment used (``config_revision`` on ``training_runs`` and ``deployments``).
"""

import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'config_revisions',
        sa.Column('number', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('base_number', sa.Integer(), nullable=True),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('reverted_to', sa.Integer(), nullable=True),
        sa.Column('content', sa.JSON(), nullable=False),
        sa.Column('content_hash', sa.String(length=64), nullable=False),
        sa.Column('actor', sa.String(length=250), nullable=False),
        sa.Column('reason', sa.Text(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('number'),
    )
    op.create_index('ix_config_revisions_created_at', 'config_revisions', ['created_at'])
    with op.batch_alter_table('training_runs') as batch:
        batch.add_column(sa.Column('config_revision', sa.Integer(), nullable=True))
    with op.batch_alter_table('deployments') as batch:
        batch.add_column(sa.Column('config_revision', sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('deployments') as batch:
        batch.drop_column('config_revision')
    with op.batch_alter_table('training_runs') as batch:
        batch.drop_column('config_revision')
    op.drop_index('ix_config_revisions_created_at', table_name='config_revisions')
    op.drop_table('config_revisions')
