"""Organisations and their API credentials (SHA-256 of a random token), and the dependencies that scope calls."""

from __future__ import annotations

import hashlib
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cachetools import TTLCache
from fastapi import Depends, Request
from sqlalchemy import Boolean, Column, DateTime, MetaData, String, Table, insert, select, update
from sqlalchemy.exc import IntegrityError

from shared.api.limits import RateLimits
from shared.db.engine import create_tables, make_engine
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

MAX_TOKEN_LENGTH = 200
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

    def __init__(
        self,
        url: str,
        schema: str | None = None,
        cache_seconds: float = 30.0,
        *,
        cache_size: int = 10_000,
        miss_cache_seconds: float = 2.0,
    ) -> None:
        self.engine = make_engine(url, schema)
        create_tables(self.engine, metadata)
        # Bounded both ways: known tokens for cache_seconds, guessed ones only briefly (a burst of the
        # same wrong token costs one query, a stream of different ones cannot grow memory).
        self._hits: TTLCache[str, Principal] = TTLCache(maxsize=cache_size, ttl=max(cache_seconds, 1e-6))
        self._misses: TTLCache[str, bool] = TTLCache(
            maxsize=max(cache_size // 10, 1), ttl=max(miss_cache_seconds, 1e-6)
        )
        self._cache_seconds = cache_seconds
        self._miss_seconds = miss_cache_seconds
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
        self.clear_cache()
        return token

    def clear_cache(self) -> None:
        with self._lock:
            self._hits.clear()
            self._misses.clear()

    @property
    def cached_tokens(self) -> int:
        with self._lock:
            return len(self._hits) + len(self._misses)

    def get(self, organisation_id: str) -> Principal | None:
        with self.engine.connect() as connection:
            row = connection.execute(select(organisations).where(organisations.c.id == organisation_id)).first()
        return Principal(row.id, Role(row.role), row.name) if row else None

    def list(self) -> list[Principal]:
        with self.engine.connect() as connection:
            rows = connection.execute(select(organisations).order_by(organisations.c.id)).all()
        return [Principal(row.id, Role(row.role), row.name) for row in rows]

    def authenticate(self, token: str) -> Principal | None:
        if len(token) > MAX_TOKEN_LENGTH:
            return None
        digest = hash_token(token)
        with self._lock:
            cached = self._hits.get(digest)
            if cached is not None:
                return cached
            if digest in self._misses:
                return None
        with self.engine.connect() as connection:
            row = connection.execute(
                select(organisations).where(organisations.c.token_hash == digest, organisations.c.active.is_(True))
            ).first()
        principal = Principal(row.id, Role(row.role), row.name) if row else None
        with self._lock:
            if principal is not None and self._cache_seconds > 0:
                self._hits[digest] = principal
            elif principal is None and self._miss_seconds > 0:
                self._misses[digest] = True
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
    rate_limits: RateLimits | None = getattr(request.app.state, "rate_limits", None)
    principal = directory.authenticate(token.strip())
    if principal is None:
        if rate_limits is not None:
            rate_limits.failed_authentication(request.client.host if request.client else "unknown")
        raise Unauthorized("unknown or revoked token")
    if rate_limits is not None and getattr(request.state, "principal", None) is None:
        rate_limits.check_organisation(principal.organisation_id)
    request.state.principal = principal
    return principal


def audit_refusal(request: Request, principal: Principal, reason: str, **detail: Any) -> None:
    """Write a refusal to the audit log of the service that answered (its own transaction); a no-op without one."""
    runtime = getattr(request.app.state, "runtime", None)
    if runtime is None:
        return
    route = request.scope.get("route")
    template = getattr(route, "path", None) or "unmatched"
    runtime.record_refusal(
        f"{request.method} {template}",
        organisation_id=principal.organisation_id,
        role=principal.role.value,
        resource=request.url.path,
        reason=reason,
        detail=detail or None,
    )


def require_role(*roles: Role | str) -> Callable[..., Principal]:
    """A dependency admitting only callers of these roles: 403 for another role, and the refusal is audited."""
    allowed = frozenset(Role(role) for role in roles)

    def dependency(request: Request, principal: Principal = Depends(current_principal)) -> Principal:
        if principal.role not in allowed:
            audit_refusal(request, principal, "role")
            names = ", ".join(sorted(role.value for role in allowed))
            raise Forbidden(f"this operation is for the {names} role; your organisation is a {principal.role.value}")
        return principal

    return dependency
