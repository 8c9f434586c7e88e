"""Bus consumers: parse a `relais.notify.*` envelope, hand it to the handler inside `handle_once`."""

from __future__ import annotations

import threading
from collections.abc import Callable

from services.notifications.domain import NOTIFY_TOPICS, InvalidNotification, parse_notification
from services.notifications.handlers import store_notification
from services.notifications.uow import NotificationsUnitOfWork
from shared.bus.envelope import Envelope, PoisonMessage
from shared.bus.worker import Handler
from shared.db.uow import handle_once

CONSUMER = "notifications.store"


def notification_handlers(
    uow_factory: Callable[[], NotificationsUnitOfWork], wakeup: threading.Event
) -> dict[str, Handler]:
    def for_topic(topic: str) -> Handler:
        def handle(envelope: Envelope) -> None:
            try:
                notification = parse_notification(topic, envelope.id, envelope.time, envelope.data)
            except InvalidNotification as exc:
                raise PoisonMessage(str(exc)) from exc
            if handle_once(
                uow_factory(), CONSUMER, envelope.id, lambda uow: store_notification(uow, notification)
            ):
                wakeup.set()  # new deliveries may be waiting

        return handle

    return {topic: for_topic(topic) for topic in NOTIFY_TOPICS}
