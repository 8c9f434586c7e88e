"""The unit of work: the only place that commits; outbox, inbox and audit ride in its transaction."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Self

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from shared.acting import person_detail
from shared.bus.envelope import DEFAULT_MAX_MESSAGE_BYTES, Envelope, encoded_envelope
from shared.clock import utcnow
from shared.db import bounds
from shared.db.tables import AuditEntry, InboxMessage, OutboxMessage


class Outbox:
    def __init__(self, session: Session, source: str, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> None:
        self._session = session
        self._source = source
        self._max_bytes = max_bytes
        self.added = 0

    def add(
        self, topic: str, key: str, event_type: str, data: dict[str, Any], message_id: str | None = None
    ) -> Envelope:
        ids = {"id": message_id} if message_id else {}
        envelope = Envelope(type=event_type, key=key, data=data, source=self._source, **ids)
        self._session.add(
            OutboxMessage(
                message_id=envelope.id,
                topic=topic,
                key=key,
                event_type=event_type,
                value=encoded_envelope(envelope, self._max_bytes),
                created_at=utcnow(),
            )
        )
        self.added += 1
        return envelope


class Inbox:
    def __init__(self, session: Session) -> None:
        self._session = session

    def seen(self, consumer: str, message_id: str) -> bool:
        query = select(col(InboxMessage.message_id)).where(
            col(InboxMessage.consumer) == consumer, col(InboxMessage.message_id) == message_id
        )
        return self._session.execute(query).first() is not None

    def record(self, consumer: str, message_id: str) -> None:
        self._session.add(InboxMessage(consumer=consumer, message_id=message_id, handled_at=utcnow()))


class AuditLog:
    def __init__(self, session: Session) -> None:
        self._session = session

    def record(
        self,
        action: str,
        *,
        outcome: str,
        organisation_id: str | None = None,
        role: str | None = None,
        resource: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        person = person_detail()
        if person is not None:
            # The person a page session acts for (Pro Santé Connect) rides in the row's detail: older rows,
            # machine tokens and bus consumers simply have no "person".
            detail = {**(detail or {}), "person": person}
        self._session.add(
            AuditEntry.bounded(
                at=utcnow(),
                organisation_id=organisation_id,
                role=role,
                action=action,
                resource=resource,
                outcome=outcome,
                detail=detail,
            )
        )

# Over-long strings and NUL bytes become a 422 at flush on every database, not a 500 on PostgreSQL.
bounds.install()


class UnitOfWork:
    """`with uow: ...; uow.commit()` — leaving the block without commit rolls everything back."""

    def __init__(
        self,
        session_factory: Callable[[], Session],
        source: str,
        on_outbox_commit: Callable[[], None] | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        self._session_factory = session_factory
        self._source = source
        self._on_outbox_commit = on_outbox_commit
        self._max_message_bytes = max_message_bytes

    def __enter__(self) -> Self:
        self.session = self._session_factory()
        self.outbox = Outbox(self.session, self._source, self._max_message_bytes)
        self.inbox = Inbox(self.session)
        self.audit = AuditLog(self.session)
        self._open_repositories(self.session)
        return self

    def _open_repositories(self, session: Session) -> None:
        """Services override this to attach their repositories to the session."""

    def __exit__(self, *exc_info: object) -> None:
        self.session.rollback()
        self.session.close()

    def commit(self) -> None:
        self.session.commit()
        if self.outbox.added and self._on_outbox_commit:
            self._on_outbox_commit()
        self.outbox.added = 0

    def rollback(self) -> None:
        self.session.rollback()


def handle_once(uow: UnitOfWork, consumer: str, message_id: str, handle: Callable[[UnitOfWork], None]) -> bool:
    """Run `handle` inside `uow` unless this consumer already handled the message; False for a duplicate."""
    with uow:
        if uow.inbox.seen(consumer, message_id):
            return False
        uow.inbox.record(consumer, message_id)
        handle(uow)
        try:
            uow.commit()
        except IntegrityError:
            uow.rollback()
            # A concurrent delivery of the same message committed first: ours is the duplicate.
            if uow.inbox.seen(consumer, message_id):
                return False
            raise
    return True


class Wakeup:
    """Lets a commit nudge the outbox relay instead of waiting for its next tick."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()

    def wait(self, timeout: float) -> bool:
        fired = self._event.wait(timeout)
        self._event.clear()
        return fired
