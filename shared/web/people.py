"""Page sessions opened by a person (Pro Santé Connect): the person is kept beside the session, in a table of
its own, so the session store itself (and the token sign-in) stay as they are."""

from __future__ import annotations

from dataclasses import replace

from sqlalchemy import Column, MetaData, String, Table, delete, insert, select

from shared.acting import Person, note_person
from shared.auth import Directory, Principal, hash_token
from shared.db.engine import create_tables
from shared.members import MembershipSource
from shared.web.sessions import SessionConfig, SessionStore, web_sessions

metadata = MetaData()
SESSION_PEOPLE = Table(
    "web_session_person",
    metadata,
    Column("id_hash", String(64), primary_key=True),
    Column("rpps", String(11), nullable=False),
    Column("name", String(300), nullable=False),
)


class PersonSessionStore(SessionStore):
    """A session store whose sessions may name the person acting (and tell the audit who that is)."""

    def __init__(
        self,
        directory: Directory,
        config: SessionConfig | None = None,
        clock=None,
        members: MembershipSource | None = None,
    ) -> None:
        super().__init__(directory, config, clock)
        self.members = members
        create_tables(self.engine, metadata)  # serialised on PostgreSQL, as the kernel's tables

    def open_for(self, principal: Principal, person: Person) -> str:
        session_id = self.open(principal)
        with self.engine.begin() as connection:
            connection.execute(
                insert(SESSION_PEOPLE).values(id_hash=hash_token(session_id), rpps=person.rpps, name=person.name)
            )
            # Rows of sessions swept or closed elsewhere go with the next sign-in of a person.
            live = select(web_sessions.c.id_hash)
            connection.execute(delete(SESSION_PEOPLE).where(SESSION_PEOPLE.c.id_hash.not_in(live)))
        return session_id

    def close(self, session_id: str) -> None:
        super().close(session_id)
        with self.engine.begin() as connection:
            connection.execute(delete(SESSION_PEOPLE).where(SESSION_PEOPLE.c.id_hash == hash_token(session_id)))

    def authenticate(self, session_id: str) -> Principal | None:
        principal = super().authenticate(session_id)
        if principal is None:
            return None
        with self.engine.connect() as connection:
            row = connection.execute(
                select(SESSION_PEOPLE).where(SESSION_PEOPLE.c.id_hash == hash_token(session_id))
            ).first()
        if row is None:
            return principal
        person = Person(row.rpps, row.name)
        acts_for = self.members.organisations_for(person.rpps) if self.members is not None else [principal]
        if principal.organisation_id not in {organisation.organisation_id for organisation in acts_for}:
            # No longer a member (removed, or the organisation deactivated): the session ends now.
            self.close(session_id)
            return None
        note_person(person)
        return replace(principal, person=person)
