"""notifications: the disclosure log (who received what about a patient, by which channel, when)

Revision ID: d7e2b9c4f101
Revises: c1a0d7e4a003
Create Date: 2026-11-30 07:20:00

"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = 'd7e2b9c4f101'
down_revision: str | Sequence[str] | None = 'c1a0d7e4a003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('notifications_disclosure',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('patient_key', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('notification_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('org_id', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('role', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('event', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('detail', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('channel', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('notification_id', 'channel', name='uq_notifications_disclosure_channel')
    )
    with op.batch_alter_table('notifications_disclosure', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_notifications_disclosure_patient_key'), ['patient_key'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('notifications_disclosure', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_notifications_disclosure_patient_key'))
    op.drop_table('notifications_disclosure')
