"""Bus consumers: parse a `relais.notify.*` envelope, hand a StoreNotification to the message bus."""

from __future__ import annotations

import threading

from services.notifications.commands import StoreNotification
from services.notifications.domain import InvalidNotification, parse_notification
from services.notifications.messagebus import MessageBus
from shared.bus.envelope import Envelope, PoisonMessage
from shared.bus.worker import Handler
from shared.contracts import NOTIFY_TOPICS

CONSUMER = "notifications.store"


def notification_handlers(bus: MessageBus, wakeup: threading.Event) -> dict[str, Handler]:
    def for_topic(topic: str) -> Handler:
        def handle(envelope: Envelope) -> None:
            try:
                notification = parse_notification(topic, envelope.id, envelope.time, envelope.data)
            except InvalidNotification as exc:
                raise PoisonMessage(str(exc)) from exc
            if bus.handle(StoreNotification(notification, CONSUMER)):
                wakeup.set()  # new deliveries may be waiting

        return handle

    return {topic: for_topic(topic) for topic in NOTIFY_TOPICS}
