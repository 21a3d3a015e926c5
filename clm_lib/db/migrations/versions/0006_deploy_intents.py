"""deploy lock fencing: a fencing token and a heartbeat on the deploy lock

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07

Adds ``token`` (incremented by every acquisition of the lock: a holder checks before each serving change that it
is still the current one) and ``heartbeat_at`` (the database's time of the holder's last renewal) to
``deploy_locks`` (clm_lib/deploy/lock.py).
"""

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('deploy_locks') as batch:
        batch.add_column(sa.Column('token', sa.BigInteger(), nullable=False, server_default='0'))
        batch.add_column(sa.Column('heartbeat_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('deploy_locks') as batch:
        batch.drop_column('heartbeat_at')
        batch.drop_column('token')
