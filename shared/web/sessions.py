"""Server-side sessions for people signed in through the pages, kept in the organisation directory database.

A session id is a 256-bit random value given to the browser in an HttpOnly cookie; only its SHA-256 is stored.
The CSRF token is an HMAC of the session id, so it is bound to the session and needs no storage of its own.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
import weakref
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Column, DateTime, Index, MetaData, String, Table, delete, insert, select, update
from starlette.requests import Request

from shared.auth import Directory, Principal, hash_token, organisations
from shared.clock import utcnow
from shared.db.engine import create_tables
from shared.errors import Forbidden, Unauthorized
from shared.events import Role

metadata = MetaData()
web_sessions = Table(
    "web_session",
    metadata,
    Column("id_hash", String(64), primary_key=True),
    Column("organisation_id", String(100), nullable=False),
    # The organisation's token hash at sign-in: rotating or revoking the token ends its sessions.
    Column("token_hash", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("last_seen_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Index("ix_web_session_expires_at", "expires_at"),
)

SESSION_COOKIE = "relais_session"
# Outside development the cookie is Secure, and the __Host- prefix pins it to this host and path "/".
SECURE_SESSION_COOKIE = "__Host-relais_session"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# last_seen_at is written at most this often per session, not on every request.
TOUCH_SECONDS = 60


def _aware(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes for timezone-aware columns.
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def csrf_token(session_id: str) -> str:
    return hmac.new(session_id.encode(), b"relais-csrf-v1", hashlib.sha256).hexdigest()


def csrf_matches(session_id: str, presented: str | None) -> bool:
    return bool(presented) and hmac.compare_digest(csrf_token(session_id), str(presented))


@dataclass(frozen=True)
class SessionConfig:
    max_age: timedelta = timedelta(hours=8)
    idle: timedelta = timedelta(minutes=30)
    secure: bool = False

    @property
    def cookie_name(self) -> str:
        return SECURE_SESSION_COOKIE if self.secure else SESSION_COOKIE


class SessionStore:
    def __init__(self, directory: Directory, config: SessionConfig | None = None, clock=None) -> None:
        self.engine = directory.engine
        self.config = config or SessionConfig()
        self._clock = clock or utcnow
        create_tables(self.engine, metadata)

    def open(self, principal: Principal) -> str:
        """A new session for an organisation just authenticated by its token; returns the cookie value."""
        session_id = secrets.token_urlsafe(32)
        now = self._clock()
        with self.engine.begin() as connection:
            token_hash = connection.execute(
                select(organisations.c.token_hash).where(organisations.c.id == principal.organisation_id)
            ).scalar_one()
            connection.execute(
                insert(web_sessions).values(
                    id_hash=hash_token(session_id),
                    organisation_id=principal.organisation_id,
                    token_hash=token_hash,
                    created_at=now,
                    last_seen_at=now,
                    expires_at=now + self.config.max_age,
                )
            )
            # Expired rows of anyone are swept on sign-in, so the table never grows without bound.
            connection.execute(delete(web_sessions).where(web_sessions.c.expires_at < now))
        return session_id

    def close(self, session_id: str) -> None:
        with self.engine.begin() as connection:
            connection.execute(delete(web_sessions).where(web_sessions.c.id_hash == hash_token(session_id)))

    def authenticate(self, session_id: str) -> Principal | None:
        """The organisation of a live session (not expired, not idle too long, token unchanged), else None."""
        if not session_id or len(session_id) > 100:
            return None
        digest = hash_token(session_id)
        now = self._clock()
        with self.engine.connect() as connection:
            row = connection.execute(
                select(web_sessions, organisations.c.name, organisations.c.role)
                .join(organisations, organisations.c.id == web_sessions.c.organisation_id)
                .where(
                    web_sessions.c.id_hash == digest,
                    organisations.c.active.is_(True),
                    organisations.c.token_hash == web_sessions.c.token_hash,
                )
            ).first()
        if row is None:
            return None
        last_seen = _aware(row.last_seen_at)
        if _aware(row.expires_at) <= now or last_seen + self.config.idle <= now:
            self.close(session_id)
            return None
        if (now - last_seen).total_seconds() >= TOUCH_SECONDS:
            with self.engine.begin() as connection:
                connection.execute(
                    update(web_sessions).where(web_sessions.c.id_hash == digest).values(last_seen_at=now)
                )
        return Principal(row.organisation_id, Role(row.role), row.name)

    def principal_for(self, request: Request) -> Principal | None:
        """The caller named by the session cookie (None without one); unsafe methods need the CSRF token."""
        session_id = request.cookies.get(self.config.cookie_name)
        if not session_id:
            return None
        principal = self.authenticate(session_id)
        if principal is None:
            raise Unauthorized("your session has ended: sign in again")
        if request.method not in SAFE_METHODS:
            # Browsers send Sec-Fetch-Site; a cross-site write riding on the cookie is refused outright.
            if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
                raise Forbidden("cross-site request refused")
            if not csrf_matches(session_id, request.headers.get(CSRF_HEADER)):
                raise Forbidden("missing or wrong CSRF token (send the X-CSRF-Token header of the page)")
        return principal


_throttles: weakref.WeakKeyDictionary[Directory, SignInThrottle] = weakref.WeakKeyDictionary()
_throttles_lock = threading.Lock()


def throttle_for(directory: Directory, limit: int, window_seconds: float) -> SignInThrottle:
    """One throttle per directory, so every service's sign-in page in one process counts together."""
    with _throttles_lock:
        throttle = _throttles.get(directory)
        if throttle is None:
            throttle = _throttles[directory] = SignInThrottle(limit, window_seconds)
        return throttle


class SignInThrottle:
    """At most `limit` failed sign-ins per client address in a sliding window (kept in this process).

    Hand-written: a deque per address is all it takes, and tokens are 256-bit so this guards the
    database and the log from floods rather than the tokens from guessing.
    """

    def __init__(self, limit: int = 10, window_seconds: float = 900.0, clock=time.monotonic) -> None:
        self.limit = limit
        self.window = window_seconds
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def retry_after(self, key: str) -> int:
        """Seconds until this address may try again (0: it may try now)."""
        now = self._clock()
        with self._lock:
            failures = self._failures.get(key)
            if not failures:
                return 0
            while failures and failures[0] <= now - self.window:
                failures.popleft()
            if len(failures) < self.limit:
                return 0
            return max(1, int(failures[0] + self.window - now) + 1)

    def failed(self, key: str) -> None:
        with self._lock:
            if len(self._failures) > 10_000:  # bounded memory under a spray of addresses
                self._failures.clear()
            self._failures.setdefault(key, deque()).append(self._clock())
