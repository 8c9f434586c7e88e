"""Sign-ins under way: what the callback needs (nonce, PKCE verifier) and the organisations offered to a person.

Keyed by the SHA-256 of `state` (or of the offer's id), each row is taken once: a replayed callback or a second
choice finds nothing. Rows live minutes; expired ones are swept whenever a sign-in starts.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import JSON, Column, DateTime, MetaData, String, Table, delete, insert
from sqlalchemy.engine import Engine

from shared.acting import Person
from shared.auth import hash_token
from shared.clock import utcnow
from shared.db.engine import create_tables
from shared.web.oidc import Authorization

metadata = MetaData()
PENDING = Table(
    "oidc_login",
    metadata,
    Column("id_hash", String(64), primary_key=True),
    Column("kind", String(10), nullable=False),  # "authorize" (state) or "choose" (organisations offered)
    Column("nonce", String(100)),
    Column("code_verifier", String(200)),
    Column("rpps", String(11)),
    Column("person_name", String(300)),
    Column("organisations", JSON),
    Column("expires_at", DateTime(timezone=True), nullable=False, index=True),
)


@dataclass(frozen=True)
class PendingAuthorization:
    nonce: str
    code_verifier: str


class PendingLogins:
    def __init__(self, engine: Engine, lifetime: timedelta) -> None:
        self.engine = engine
        self.lifetime = lifetime
        create_tables(engine, metadata)  # serialised on PostgreSQL, as the kernel's tables

    def start(self, authorization: Authorization) -> None:
        now = utcnow()
        with self.engine.begin() as connection:
            connection.execute(delete(PENDING).where(PENDING.c.expires_at < now))
            connection.execute(
                insert(PENDING).values(
                    id_hash=hash_token(authorization.state), kind="authorize", nonce=authorization.nonce,
                    code_verifier=authorization.code_verifier, expires_at=now + self.lifetime,
                )
            )

    def _take(self, key: str, kind: str):
        with self.engine.begin() as connection:
            return connection.execute(
                delete(PENDING)
                .where(PENDING.c.id_hash == hash_token(key), PENDING.c.kind == kind, PENDING.c.expires_at > utcnow())
                .returning(PENDING.c.nonce, PENDING.c.code_verifier, PENDING.c.rpps, PENDING.c.person_name,
                           PENDING.c.organisations)
            ).first()

    def take(self, state: str) -> PendingAuthorization | None:
        """The sign-in this state started, once; None for an unknown, expired or already used state."""
        row = self._take(state, "authorize")
        return PendingAuthorization(row.nonce, row.code_verifier) if row else None

    def offer(self, person: Person, organisation_ids: list[str]) -> str:
        choice = secrets.token_urlsafe(32)
        with self.engine.begin() as connection:
            connection.execute(
                insert(PENDING).values(
                    id_hash=hash_token(choice), kind="choose", rpps=person.rpps, person_name=person.name,
                    organisations=organisation_ids, expires_at=utcnow() + self.lifetime,
                )
            )
        return choice

    def take_offer(self, choice: str) -> tuple[Person, list[str]] | None:
        row = self._take(choice, "choose")
        return (Person(row.rpps, row.person_name), list(row.organisations or [])) if row else None
