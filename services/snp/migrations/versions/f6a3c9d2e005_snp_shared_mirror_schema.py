"""snp: the care-team and territory mirrors take the kernel's one schema (shared.mirrors), rows kept

The care-team mirror keeps the referent as discharge's does; both tables keep the snapshot's envelope time and
message id, the tie-breakers of the shared ordering rule.

Revision ID: f6a3c9d2e005
Revises: 5a7e3c9d2b61
Create Date: 2026-12-03 18:00:00

"""
from collections.abc import Sequence

from alembic import op

from shared.mirrors.migration import upgrade_to_shared_schema

revision: str = 'f6a3c9d2e005'
down_revision: str | Sequence[str] | None = '5a7e3c9d2b61'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    upgrade_to_shared_schema("snp_careteam", "snp_territory")


def downgrade() -> None:
    with op.batch_alter_table('snp_territory') as batch_op:
        batch_op.drop_column('source_sent_at')
        batch_op.drop_column('source_message_id')
    with op.batch_alter_table('snp_careteam') as batch_op:
        for name in ('referent', 'source_sent_at', 'source_message_id'):
            batch_op.drop_column(name)
