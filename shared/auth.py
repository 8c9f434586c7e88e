"""Organisations and their API credentials (SHA-256 of a random token), and the dependencies that scope calls."""

from __future__ import annotations

import hashlib
import secrets
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from ipaddress import ip_network
from typing import Any

from cachetools import TTLCache
from fastapi import Depends, Request
from sqlalchemy import Boolean, Column, DateTime, ForeignKey, MetaData, String, Table, delete, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from shared.acting import Person
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

# What a hospital's HL7 v2 sender calls itself (MSH-4) and the networks its plain-MLLP sender may connect from.
HL7_FACILITY_TABLE = Table(
    "organisation_hl7_facility",
    metadata,
    Column("facility", String(227), primary_key=True),
    Column("organisation_id", String(100), ForeignKey("organisation.id"), nullable=False, index=True),
)
HL7_NETWORK_TABLE = Table(
    "organisation_hl7_network",
    metadata,
    Column("organisation_id", String(100), ForeignKey("organisation.id"), primary_key=True),
    Column("network", String(64), primary_key=True),
)
# An organisation's MSSanté mailbox (set by an administrator or by the team itself).
MSSANTE_TABLE = Table(
    "organisation_mssante",
    metadata,
    Column("organisation_id", String(100), ForeignKey("organisation.id"), primary_key=True),
    Column("address", String(254), nullable=False),
)

MAX_TOKEN_LENGTH = 200
TOKEN_PREFIX = "rls_"  # noqa: S105 - a public prefix that makes leaked tokens greppable, not a secret


@dataclass(frozen=True)
class Principal:
    organisation_id: str
    role: Role
    name: str
    # Set for a page session opened by a person (OpenID Connect); None for machine tokens and token sign-in.
    person: Person | None = None


@dataclass(frozen=True)
class Hl7Binding:
    """How a hospital's HL7 v2 sender is recognised: its MSH-4 names and the networks it connects from."""

    organisation_id: str
    facilities: tuple[str, ...]
    networks: tuple[str, ...]


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

    def add(
        self,
        role: Role | str,
        organisation_id: str,
        name: str,
        *,
        hl7_facilities: Sequence[str] = (),
        hl7_networks: Sequence[str] = (),
        mssante: str | None = None,
    ) -> str:
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
                self._set_details(connection, organisation_id, hl7_facilities, hl7_networks, mssante)
        except IntegrityError as exc:
            raise Conflict(f"organisation {organisation_id!r} is already registered") from exc
        return token

    def update(
        self,
        organisation_id: str,
        *,
        name: str | None = None,
        hl7_facilities: Sequence[str] | None = None,
        hl7_networks: Sequence[str] | None = None,
        mssante: str | None = None,
    ) -> None:
        """Change what is given; a list given replaces the stored one (an empty list clears it)."""
        try:
            with self.engine.begin() as connection:
                known = select(organisations.c.id).where(organisations.c.id == organisation_id)
                if connection.execute(known).first() is None:
                    raise NotFound(f"no organisation {organisation_id!r}")
                if name is not None:
                    rename = update(organisations).where(organisations.c.id == organisation_id).values(name=name)
                    connection.execute(rename)
                if hl7_facilities is not None:
                    owned = HL7_FACILITY_TABLE.c.organisation_id == organisation_id
                    connection.execute(delete(HL7_FACILITY_TABLE).where(owned))
                if hl7_networks is not None:
                    owned = HL7_NETWORK_TABLE.c.organisation_id == organisation_id
                    connection.execute(delete(HL7_NETWORK_TABLE).where(owned))
                self._set_details(connection, organisation_id, hl7_facilities or (), hl7_networks or (), mssante)
        except IntegrityError as exc:
            raise Conflict("an HL7 facility name given is already bound to another organisation") from exc
        self.clear_cache()

    @staticmethod
    def _set_details(
        connection: Connection,
        organisation_id: str,
        facilities: Sequence[str],
        networks: Sequence[str],
        mssante: str | None,
    ) -> None:
        for facility in dict.fromkeys(facilities):
            connection.execute(insert(HL7_FACILITY_TABLE).values(facility=facility, organisation_id=organisation_id))
        for network in dict.fromkeys(str(ip_network(value, strict=False)) for value in networks):
            connection.execute(insert(HL7_NETWORK_TABLE).values(network=network, organisation_id=organisation_id))
        if mssante is not None:
            set_mssante_address(connection, organisation_id, mssante or None)

    def hl7_binding(self, organisation_id: str) -> Hl7Binding:
        with self.engine.connect() as connection:
            facilities = connection.execute(
                select(HL7_FACILITY_TABLE.c.facility).where(HL7_FACILITY_TABLE.c.organisation_id == organisation_id)
            ).scalars().all()
            networks = connection.execute(
                select(HL7_NETWORK_TABLE.c.network).where(HL7_NETWORK_TABLE.c.organisation_id == organisation_id)
            ).scalars().all()
        return Hl7Binding(organisation_id, tuple(sorted(facilities)), tuple(sorted(networks)))

    def hl7_bindings(self) -> list[Hl7Binding]:
        """Every hospital with an HL7 v2 facility or network (what an MLLP listener matches senders against)."""
        with self.engine.connect() as connection:
            ids = set(connection.execute(select(HL7_FACILITY_TABLE.c.organisation_id)).scalars().all())
            ids |= set(connection.execute(select(HL7_NETWORK_TABLE.c.organisation_id)).scalars().all())
        return [self.hl7_binding(organisation_id) for organisation_id in sorted(ids)]

    def mssante_address(self, organisation_id: str) -> str | None:
        with self.engine.connect() as connection:
            return connection.execute(
                select(MSSANTE_TABLE.c.address).where(MSSANTE_TABLE.c.organisation_id == organisation_id)
            ).scalar_one_or_none()

    def set_mssante_address(self, organisation_id: str, address: str | None) -> None:
        """Set (or, with None, remove) an organisation's MSSanté address; the caller has validated it."""
        with self.engine.begin() as connection:
            set_mssante_address(connection, organisation_id, address)

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


def set_mssante_address(connection: Connection, organisation_id: str, address: str | None) -> None:
    connection.execute(delete(MSSANTE_TABLE).where(MSSANTE_TABLE.c.organisation_id == organisation_id))
    if address:
        connection.execute(insert(MSSANTE_TABLE).values(organisation_id=organisation_id, address=address))


def current_principal(request: Request) -> Principal:
    """The caller: `Authorization: Bearer` first; else a page's session cookie, where the app has one.

    Whatever the credential, a failure counts against the client address and a success against the
    organisation's request budget (once per request)."""
    rate_limits: RateLimits | None = getattr(request.app.state, "rate_limits", None)
    principal = _session_principal(request, rate_limits) if "authorization" not in request.headers else None
    if principal is None:
        principal = _bearer_principal(request, rate_limits)
    if rate_limits is not None and getattr(request.state, "principal", None) is None:
        rate_limits.check_organisation(principal.organisation_id)
    request.state.principal = principal
    return principal


def _client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _session_principal(request: Request, rate_limits: RateLimits | None) -> Principal | None:
    sessions = getattr(request.app.state, "sessions", None)
    if sessions is None:
        return None
    try:
        found: Principal | None = sessions.principal_for(request)
    except Unauthorized:
        # An unknown, expired or revoked session id is a failed authentication like a wrong token.
        if rate_limits is not None:
            rate_limits.failed_authentication(_client_address(request))
        raise
    return found


def _bearer_principal(request: Request, rate_limits: RateLimits | None) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("send 'Authorization: Bearer <token>' (see `relais org add`)")
    directory: Directory = request.app.state.directory
    principal = directory.authenticate(token.strip())
    if principal is None:
        if rate_limits is not None:
            rate_limits.failed_authentication(_client_address(request))
        raise Unauthorized("unknown or revoked token")
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
