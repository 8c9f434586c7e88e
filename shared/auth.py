"""Organisations and their API credentials (SHA-256 of a random token), and the dependencies that scope calls."""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from fastapi import Depends, Request
from sqlalchemy import Boolean, Column, DateTime, MetaData, String, Table, insert, select, update
from sqlalchemy.exc import IntegrityError

from shared.db.engine import make_engine
from shared.errors import Conflict, Forbidden, NotFound, Unauthorized
from shared.events import Role

metadata = MetaData()
organisations = Table(
    "organisation",
    metadata,
    Column("id", String(100), primary_key=True),
    Column("name", String(300), nullable=False),
    Column("role", String(20), nullable=False),
    # Tokens are 256-bit random values, so a fast hash is enough; the token itself is never stored.
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("active", Boolean, nullable=False, default=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

TOKEN_PREFIX = "rls_"  # noqa: S105 - a public prefix that makes leaked tokens greppable, not a secret


@dataclass(frozen=True)
class Principal:
    organisation_id: str
    role: Role
    name: str


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Directory:
    """The organisations registered with this Relais deployment."""

    def __init__(self, url: str, schema: str | None = None, cache_seconds: float = 30.0) -> None:
        self.engine = make_engine(url, schema)
        metadata.create_all(self.engine)
        self._cache: dict[str, tuple[float, Principal | None]] = {}
        self._cache_seconds = cache_seconds
        self._lock = threading.Lock()

    def add(self, role: Role | str, organisation_id: str, name: str) -> str:
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        row = {
            "id": organisation_id,
            "name": name,
            "role": Role(role).value,
            "token_hash": hash_token(token),
            "active": True,
            "created_at": datetime.now(UTC),
        }
        try:
            with self.engine.begin() as connection:
                connection.execute(insert(organisations).values(**row))
        except IntegrityError as exc:
            raise Conflict(f"organisation {organisation_id!r} is already registered") from exc
        return token

    def rotate(self, organisation_id: str) -> str:
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        with self.engine.begin() as connection:
            changed = connection.execute(
                update(organisations)
                .where(organisations.c.id == organisation_id)
                .values(token_hash=hash_token(token))
            ).rowcount
        if not changed:
            raise NotFound(f"no organisation {organisation_id!r}")
        with self._lock:
            self._cache.clear()
        return token

    def get(self, organisation_id: str) -> Principal | None:
        with self.engine.connect() as connection:
            row = connection.execute(select(organisations).where(organisations.c.id == organisation_id)).first()
        return Principal(row.id, Role(row.role), row.name) if row else None

    def list(self) -> list[Principal]:
        with self.engine.connect() as connection:
            rows = connection.execute(select(organisations).order_by(organisations.c.id)).all()
        return [Principal(row.id, Role(row.role), row.name) for row in rows]

    def authenticate(self, token: str) -> Principal | None:
        digest = hash_token(token)
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(digest)
        if cached and cached[0] > now:
            return cached[1]
        with self.engine.connect() as connection:
            row = connection.execute(
                select(organisations).where(organisations.c.token_hash == digest, organisations.c.active.is_(True))
            ).first()
        principal = Principal(row.id, Role(row.role), row.name) if row else None
        with self._lock:
            self._cache[digest] = (now + self._cache_seconds, principal)
        return principal

    def close(self) -> None:
        self.engine.dispose()


def current_principal(request: Request) -> Principal:
    """The caller: `Authorization: Bearer` first (unchanged); else a page's session cookie, where the app has one."""
    sessions = getattr(request.app.state, "sessions", None)
    if "authorization" not in request.headers and sessions is not None:
        from_session: Principal | None = sessions.principal_for(request)
        if from_session is not None:
            request.state.principal = from_session
            return from_session
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("send 'Authorization: Bearer <token>' (see `relais org add`)")
    directory: Directory = request.app.state.directory
    principal = directory.authenticate(token.strip())
    if principal is None:
        raise Unauthorized("unknown or revoked token")
    request.state.principal = principal
    return principal


def require_role(*roles: Role):
    """A dependency admitting only callers of these roles (403 for an authenticated caller of another role)."""
    allowed = {Role(role) for role in roles}

    def dependency(principal: Principal = Depends(current_principal)) -> Principal:
        if principal.role not in allowed:
            names = ", ".join(sorted(role.value for role in allowed))
            raise Forbidden(f"this operation is for the {names} role; your organisation is a {principal.role.value}")
        return principal

    return dependency
