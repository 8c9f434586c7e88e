"""discharge: the care-team and territory mirrors take the kernel's one schema (shared.mirrors), rows kept

careteam_id is 64 long as in snp; both tables keep the snapshot's contract time, envelope time and message id, so a
late snapshot no longer overwrites a newer one.

Revision ID: e5f2b8c1d004
Revises: d4e1a0c7b003
Create Date: 2026-12-03 18:00:00

"""
from collections.abc import Sequence

import sqlmodel
from alembic import op

from shared.mirrors.migration import upgrade_to_shared_schema

revision: str = 'e5f2b8c1d004'
down_revision: str | Sequence[str] | None = 'd4e1a0c7b003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    upgrade_to_shared_schema("discharge_careteam_mirror", "discharge_territory_mirror")
    # This table kept the envelope's time as its snapshot time: under the shared rule that is the tie-breaker.
    op.execute("UPDATE discharge_careteam_mirror SET source_sent_at = source_time, source_time = NULL")


def downgrade() -> None:
    op.execute("UPDATE discharge_careteam_mirror SET source_time = source_sent_at")
    with op.batch_alter_table('discharge_territory_mirror') as batch_op:
        batch_op.drop_index('ix_discharge_territory_mirror_cpts_org_id')
        for name in ('source_time', 'source_sent_at', 'source_message_id'):
            batch_op.drop_column(name)
    with op.batch_alter_table('discharge_careteam_mirror') as batch_op:
        batch_op.drop_column('source_sent_at')
        batch_op.drop_column('source_message_id')
        batch_op.alter_column(
            'careteam_id',
            existing_type=sqlmodel.sql.sqltypes.AutoString(length=64),
            type_=sqlmodel.sql.sqltypes.AutoString(length=36),
        )
