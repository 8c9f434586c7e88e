"""Composition root of the notifications service: the app, the workers and the tests all start here."""

from __future__ import annotations

import threading
from typing import cast

import httpx

from services.notifications.adapters.orm import retention_rules
from services.notifications.adapters.sender import GuardedSender, Sender
from services.notifications.deps import NotificationsDeps
from services.notifications.entrypoints.api import router
from services.notifications.entrypoints.consumers import notification_handlers
from services.notifications.entrypoints.worker import DeliveryWorker
from services.notifications.fhir import capability_resources
from services.notifications.handlers import HANDLERS
from services.notifications.messagebus import MessageBus
from services.notifications.mssante.api import router as mail_router
from services.notifications.mssante.handlers import MAIL_HANDLERS
from services.notifications.mssante.orm import mail_retention_rules
from services.notifications.mssante.wiring import with_mail_channel
from services.notifications.uow import NotificationsUnitOfWork
from shared.auth import Directory
from shared.bus.base import Bus
from shared.directory.lookup import DirectoryLookup
from shared.outbound import GuardedClient
from shared.retention import RetentionWorker
from shared.runtime import build_runtime
from shared.service import Service, service_app
from shared.settings import NotificationsSettings

NAME = "notifications"

DESCRIPTION = """Per-organisation notifications: a cursor feed with acknowledgements (read receipts go back
to the sender), signed webhooks with retries and dead-letter, and FHIR R4 topic-based Subscriptions
(Subscriptions Backport IG: handshake, heartbeat, `$status`, `$events`). See docs/notifications.md."""


def bootstrap(
    settings: NotificationsSettings | None = None,
    *,
    bus: Bus | None = None,
    directory: Directory | None = None,
    run_workers: bool = True,
    transport: httpx.BaseTransport | None = None,
    sender: Sender | None = None,
) -> Service:
    settings = settings or NotificationsSettings()
    runtime = build_runtime(NAME, settings, bus=bus, directory=directory, run_workers=run_workers)
    # Purge what has done its job (kernel rules and this service's), hourly, supervised like every worker.
    rules = [*retention_rules(settings), *mail_retention_rules(settings)]
    retention = RetentionWorker.for_settings(runtime.engine, settings, extra=rules, source=NAME)
    runtime.extra_workers.append(retention.run)

    def unit_of_work() -> NotificationsUnitOfWork:
        return cast(NotificationsUnitOfWork, runtime.unit_of_work(NotificationsUnitOfWork))

    deps = NotificationsDeps(
        settings=settings, directory=runtime.directory, names=DirectoryLookup(runtime.directory.engine).names
    )
    messagebus = MessageBus(unit_of_work, deps, {**HANDLERS, **MAIL_HANDLERS})
    wakeup = threading.Event()
    runtime.add_consumer(notification_handlers(messagebus, wakeup))
    # The one outbound client (webhooks, handshakes, heartbeats); a test transport keeps the URL checks.
    client = GuardedClient(deps.outbound, max_connections=settings.webhook_workers * 2, transport=transport)
    # MSSanté mails ride the same delivery queue: `mailto:` targets go by SMTP (docs/mssante.md).
    channels, mail_workers = with_mail_channel(sender or GuardedSender(client), messagebus)
    runtime.extra_workers.extend(mail_workers)
    dispatcher = DeliveryWorker(messagebus, channels, wakeup)
    runtime.extra_workers.append(dispatcher.run)
    runtime.worker_probes.append(lambda: dispatcher.healthy)  # a dispatcher failing tick after tick: /readyz 503
    app = service_app(
        runtime,
        title="Relais notifications",
        description=DESCRIPTION,
        routers=[router, mail_router],
        resources=capability_resources(),
    )
    app.state.messagebus = messagebus
    app.state.dispatcher = dispatcher
    return Service(runtime, app)
