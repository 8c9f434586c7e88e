"""kernel table: outbox_dead_letter (outbox rows the bus can never take)

Revision ID: c1a0d7e4a004
Revises: 9c2e7d41a0b3
Create Date: 2026-11-23 12:00:00

"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = 'c1a0d7e4a004'
down_revision: str | Sequence[str] | None = '9c2e7d41a0b3'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('outbox_dead_letter',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('outbox_seq', sa.Integer(), nullable=False),
    sa.Column('message_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('topic', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('key', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('event_type', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(length=50), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('dead_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('outbox_dead_letter', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_outbox_dead_letter_dead_at'), ['dead_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('outbox_dead_letter', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_outbox_dead_letter_dead_at'))
    op.drop_table('outbox_dead_letter')
