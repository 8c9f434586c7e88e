"""discharge: orientation Tasks owned by the CPTS; a handoff may come from an orientation

Revision ID: d4e1a0c7b003
Revises: c1a0d7e4a002
Create Date: 2026-11-30 07:10:00

"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = 'd4e1a0c7b003'
down_revision: str | Sequence[str] | None = 'c1a0d7e4a002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('discharge_orientation',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
    sa.Column('discharge_id', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
    sa.Column('patient_key', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('hospital_org_id', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('cpts_org_id', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(length=30), nullable=False),
    sa.Column('team_org_id', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
    sa.Column('handoff_id', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('requested_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('discharge_id')
    )
    with op.batch_alter_table('discharge_orientation', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_discharge_orientation_patient_key'), ['patient_key'], unique=False)
        batch_op.create_index(batch_op.f('ix_discharge_orientation_cpts_org_id'), ['cpts_org_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_discharge_orientation_updated_at'), ['updated_at'], unique=False)
    with op.batch_alter_table('discharge_handoff', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('orientation_id', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=True)
        )
        batch_op.create_index(batch_op.f('ix_discharge_handoff_orientation_id'), ['orientation_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('discharge_handoff', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_discharge_handoff_orientation_id'))
        batch_op.drop_column('orientation_id')
    with op.batch_alter_table('discharge_orientation', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_discharge_orientation_updated_at'))
        batch_op.drop_index(batch_op.f('ix_discharge_orientation_cpts_org_id'))
        batch_op.drop_index(batch_op.f('ix_discharge_orientation_patient_key'))
    op.drop_table('discharge_orientation')
