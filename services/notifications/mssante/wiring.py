"""How bootstrap.py plugs the mail channel into the notifications service: its handlers on the message bus,
its sender in front of the HTTP one, its mailbox reader among the supervised workers."""

from __future__ import annotations

import threading
from collections.abc import Callable

from services.notifications.adapters.sender import Sender
from services.notifications.messagebus import MessageBus
from services.notifications.mssante.mailbox import ReceiptReader
from services.notifications.mssante.sender import ChannelSender, MailSender
from services.notifications.mssante.transport import server

Worker = Callable[[threading.Event], None]


def with_mail_channel(http: Sender, bus: MessageBus) -> tuple[ChannelSender, list[Worker]]:
    settings = bus.deps.settings
    workers: list[Worker] = []
    if settings.mssante_imap_url:
        target = server(settings.mssante_imap_url, "RELAIS_MSSANTE_IMAP_URL", settings, "imap")
        workers.append(ReceiptReader(target, bus.handle, settings.mssante_imap_interval_seconds).run)
    return ChannelSender(http, MailSender.from_settings(settings)), workers
