"""The message bus: routes, the bus consumer and the delivery worker hand every command to `handle`."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from services.notifications.deps import NotificationsDeps
from services.notifications.domain import Missing
from services.notifications.handlers import HANDLERS, Handler
from services.notifications.uow import NotificationsUnitOfWork
from shared.auth import Principal
from shared.errors import NotFound

log = logging.getLogger(__name__)


class MessageBus:
    def __init__(
        self,
        uow_factory: Callable[[], NotificationsUnitOfWork],
        deps: NotificationsDeps,
        handlers: Mapping[type, Handler] = HANDLERS,
    ) -> None:
        self.uow = uow_factory
        self.deps = deps
        self._handlers = handlers

    def handle(self, command: object) -> Any:
        handler = self._handlers[type(command)]
        try:
            return handler(command, self.uow(), self.deps)
        except Missing as miss:
            raise self.missing(miss.principal, miss.action, miss.resource) from None

    def missing(self, principal: Principal, action: str, resource: str) -> NotFound:
        """Audit a miss (another organisation's id, or a guess) in its own transaction; the caller raises it."""
        try:
            with self.uow() as uow:
                uow.audit.record(
                    action,
                    outcome="not-found",
                    organisation_id=principal.organisation_id,
                    role=principal.role.value,
                    resource=resource,
                )
                uow.commit()
        except Exception as exc:  # noqa: BLE001 - the 404 stands even when its audit row cannot be written
            log.error("could not audit a miss of %s: %s", action, type(exc).__name__)
        return NotFound(f"{resource} not found")
