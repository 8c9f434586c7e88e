"""Who acts in the current request: the person behind a page session, for the audit rows the request writes.

A middleware gives each request a fresh `Acting` box in a context variable. The session store fills it when it
recognises a person; the audit log reads it. The box is shared by reference, so a value set in a threadpool
(where FastAPI runs sync dependencies and handlers, each on a copy of the context) is seen by the whole request.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send


@dataclass(frozen=True)
class Person:
    """A person signed in through Pro Santé Connect, acting for one organisation."""

    rpps: str
    name: str


@dataclass
class Acting:
    person: Person | None = None


_acting: ContextVar[Acting | None] = ContextVar("relais_acting", default=None)


def note_person(person: Person | None) -> None:
    """Record the person acting in this request (a no-op outside a request)."""
    box = _acting.get()
    if box is not None and person is not None:
        box.person = person


def acting_person() -> Person | None:
    box = _acting.get()
    return box.person if box is not None else None


def person_detail() -> dict[str, Any] | None:
    """The audit's `person` field for this request: RPPS and name, or None when no person acts."""
    person = acting_person()
    return {"rpps": person.rpps, "name": person.name} if person is not None else None


class ActingMiddleware:
    """Pure ASGI (no BaseHTTPMiddleware): one fresh box per HTTP request, reset when it ends."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        token = _acting.set(Acting())
        try:
            await self.app(scope, receive, send)
        finally:
            _acting.reset(token)
