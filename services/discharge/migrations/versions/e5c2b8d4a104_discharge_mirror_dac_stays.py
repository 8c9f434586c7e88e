"""discharge: the care-team mirror keeps the DAC cases a hospital opened for one stay

Revision ID: e5c2b8d4a104
Revises: d4e1a0c7b003
Create Date: 2026-12-03 18:15:00

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = 'e5c2b8d4a104'
down_revision: str | Sequence[str] | None = 'd4e1a0c7b003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('discharge_careteam_mirror', schema=None) as batch_op:
        batch_op.add_column(sa.Column('dac_stays', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('discharge_careteam_mirror', schema=None) as batch_op:
        batch_op.drop_column('dac_stays')
