"""The people who act for an organisation, named by their RPPS (what Pro Santé Connect tells about a person).

`MembershipSource` is the one question the sign-in asks ("which organisations does this RPPS act for?"). For now
the answer comes from a small table set by `relais org member add`; the directory import can later answer it
from the public health directory's extractions instead, behind the same protocol.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from sqlalchemy import Column, DateTime, ForeignKey, MetaData, String, Table, delete, insert, select
from sqlalchemy.exc import IntegrityError

from shared.auth import Directory, Principal, organisations
from shared.db.engine import create_tables
from shared.directory.tables import DIRECTORY_MEMBER, create_directory_tables
from shared.errors import Conflict, NotFound
from shared.events import Role

# A table of its own metadata (created next to the organisations), so the kernel's auth tables are unchanged.
metadata = MetaData()
MEMBERS_TABLE = Table(
    "organisation_member",
    metadata,
    Column("organisation_id", String(100), ForeignKey(organisations.c.id), primary_key=True),
    Column("rpps", String(11), primary_key=True, index=True),
    Column("name", String(300), nullable=False),
    Column("added_at", DateTime(timezone=True), nullable=False),
)

RPPS = re.compile(r"^\d{11}$")
# Pro Santé Connect names a person by their IDNPS: "8" followed by the RPPS for RPPS holders.
IDNPS_RPPS_PREFIX = "8"


def rpps_of(subject_name_id: str) -> str | None:
    """The RPPS in a Pro Santé Connect SubjectNameID (IDNPS "8" + RPPS, or a bare RPPS), else None."""
    value = subject_name_id.strip()
    if len(value) == 12 and value.startswith(IDNPS_RPPS_PREFIX):
        value = value[1:]
    return value if RPPS.match(value) else None


@dataclass(frozen=True)
class Membership:
    organisation: Principal
    rpps: str
    name: str


class MembershipSource(Protocol):
    def organisations_for(self, rpps: str) -> list[Principal]:
        """The active organisations this RPPS acts for, sorted by id (empty: unknown person)."""
        ...


class Members:
    """Members kept in the organisation directory's database (`relais org member add`)."""

    def __init__(self, directory: Directory) -> None:
        self.engine = directory.engine
        create_tables(self.engine, metadata)  # serialised on PostgreSQL, as the kernel's tables
        create_directory_tables(self.engine)

    def add(self, organisation_id: str, rpps: str, name: str) -> None:
        if not RPPS.match(rpps):
            raise ValueError("an RPPS is 11 digits")
        row = {"organisation_id": organisation_id, "rpps": rpps, "name": name, "added_at": datetime.now(UTC)}
        try:
            with self.engine.begin() as connection:
                known = select(organisations.c.id).where(organisations.c.id == organisation_id)
                if connection.execute(known).first() is None:
                    raise NotFound(f"no organisation {organisation_id!r}")
                connection.execute(insert(MEMBERS_TABLE).values(**row))
        except IntegrityError as exc:
            raise Conflict(f"RPPS {rpps} is already a member of {organisation_id!r}") from exc

    def remove(self, organisation_id: str, rpps: str) -> bool:
        with self.engine.begin() as connection:
            removed = connection.execute(
                delete(MEMBERS_TABLE).where(
                    MEMBERS_TABLE.c.organisation_id == organisation_id, MEMBERS_TABLE.c.rpps == rpps
                )
            ).rowcount
        return bool(removed)

    def of(self, organisation_id: str) -> list[Membership]:
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(MEMBERS_TABLE, organisations.c.name.label("organisation_name"), organisations.c.role)
                .join(organisations, organisations.c.id == MEMBERS_TABLE.c.organisation_id)
                .where(MEMBERS_TABLE.c.organisation_id == organisation_id)
                .order_by(MEMBERS_TABLE.c.rpps)
            ).all()
        return [
            Membership(Principal(row.organisation_id, Role(row.role), row.organisation_name), row.rpps, row.name)
            for row in rows
        ]

    def organisations_for(self, rpps: str) -> list[Principal]:
        """Members entered by hand, and those the imported directory lists (`relais directory import`)."""
        by_hand = select(MEMBERS_TABLE.c.organisation_id).where(MEMBERS_TABLE.c.rpps == rpps)
        imported = select(DIRECTORY_MEMBER.c.organisation_id).where(DIRECTORY_MEMBER.c.rpps == rpps)
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(organisations)
                .where(organisations.c.id.in_(by_hand.union(imported)), organisations.c.active.is_(True))
                .order_by(organisations.c.id)
            ).all()
        return [Principal(row.id, Role(row.role), row.name) for row in rows]
