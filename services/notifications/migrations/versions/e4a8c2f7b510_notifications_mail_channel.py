"""notifications: the MSSanté mail channel (a team's chosen events, the receipts of its mails)

Revision ID: e4a8c2f7b510
Revises: d7e2b9c4f101
Create Date: 2026-12-03 18:00:00

"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = 'e4a8c2f7b510'
down_revision: str | Sequence[str] | None = 'd7e2b9c4f101'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('notifications_mail_channel',
    sa.Column('org_id', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('events', sa.JSON(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('org_id')
    )
    op.create_table('notifications_mail_receipt',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('notification_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('org_id', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('delivery_id', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('code', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('detail', sqlmodel.sql.sqltypes.AutoString(length=300), nullable=True),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('notification_id', 'status', name='uq_notifications_mail_receipt_status')
    )
    with op.batch_alter_table('notifications_mail_receipt', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_notifications_mail_receipt_notification_id'), ['notification_id'],
                              unique=False)
        batch_op.create_index(batch_op.f('ix_notifications_mail_receipt_org_id'), ['org_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('notifications_mail_receipt', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_notifications_mail_receipt_org_id'))
        batch_op.drop_index(batch_op.f('ix_notifications_mail_receipt_notification_id'))
    op.drop_table('notifications_mail_receipt')
    op.drop_table('notifications_mail_channel')
