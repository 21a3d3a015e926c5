"""live serving metrics kept over time (minute buckets per version)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07

``serving_metrics``: one row per (minute, model version, slot) with requests, errors, p50/p95 latency and the
feedback ratings, written by the router (clm_lib/serving/metrics_store.py) and read by the Performance screen.
"""

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'serving_metrics',
        sa.Column('bucket_start', sa.DateTime(timezone=True), nullable=False),
        sa.Column('model_version', sa.String(length=32), nullable=False),
        sa.Column('slot', sa.String(length=16), nullable=False),
        sa.Column('requests', sa.Integer(), nullable=False),
        sa.Column('errors', sa.Integer(), nullable=False),
        sa.Column('latency_p50_ms', sa.Float(), nullable=True),
        sa.Column('latency_p95_ms', sa.Float(), nullable=True),
        sa.Column('latency_samples', sa.Integer(), nullable=False),
        sa.Column('feedback_count', sa.Integer(), nullable=False),
        sa.Column('feedback_sum', sa.Float(), nullable=False),
        sa.Column('written_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('bucket_start', 'model_version', 'slot'),
    )


def downgrade() -> None:
    op.drop_table('serving_metrics')
