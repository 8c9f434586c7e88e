"""The ACKs Relais sent, per hospital and MSH-10: the same control id again gets the same answer, processed once.

The row is written after the message's own commit (the handlers store their answer under the message id, so a
resend between that commit and this row is replayed by the handler, not processed twice). An AR is never stored:
it means "fix it and send again", and the fixed message comes with the same control id. Rows older than
RELAIS_MLLP_ACK_RETENTION_DAYS are purged (shared.hl7v2.mllp.listener_worker).

The table lives in the hosting service's database, created at start when missing (like the directory's HL7
tables) so that it needs no Alembic revision in a history other services' branches also extend.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from sqlalchemy import Column, DateTime, Engine, MetaData, String, Table, Text, insert, select
from sqlalchemy.exc import IntegrityError

from shared.db.engine import create_tables

__all__ = ["ACK_TABLE", "AckStore"]

_metadata = MetaData()
ACK_TABLE = Table(
    "hl7_ack",
    _metadata,
    Column("sender_org_id", String(100), primary_key=True),
    Column("control_id", String(200), primary_key=True),
    Column("code", String(2), nullable=False),
    Column("acks", Text, nullable=False),  # JSON list of the ACK messages sent (text, sender's separators)
    Column("created_at", DateTime(timezone=True), nullable=False, index=True),
)


class AckStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.table = ACK_TABLE
        create_tables(engine, _metadata)  # the engine's search path names the service's schema

    def get(self, sender_org_id: str, control_id: str) -> list[str] | None:
        with self.engine.connect() as connection:
            row = connection.execute(
                select(self.table.c.acks).where(
                    self.table.c.sender_org_id == sender_org_id, self.table.c.control_id == control_id
                )
            ).scalar_one_or_none()
        return None if row is None else list(json.loads(row))

    def put(self, sender_org_id: str, control_id: str, code: str, acks: list[str]) -> list[str]:
        """Store the ACKs; when a concurrent copy stored first, its ACKs are the answer."""
        try:
            with self.engine.begin() as connection:
                connection.execute(
                    insert(self.table).values(
                        sender_org_id=sender_org_id,
                        control_id=control_id,
                        code=code,
                        acks=json.dumps(acks),
                        created_at=datetime.now(UTC),
                    )
                )
        except IntegrityError:
            return self.get(sender_org_id, control_id) or acks
        return acks
