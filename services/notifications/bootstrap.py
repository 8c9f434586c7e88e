"""Composition root of the notifications service: the app, the workers and the tests all start here."""

from __future__ import annotations

import threading
from functools import partial

import httpx

from services.notifications.adapters.dispatcher import Dispatcher
from services.notifications.entrypoints.api import build_router
from services.notifications.entrypoints.consumers import notification_handlers
from services.notifications.fhir import capability_resources
from services.notifications.uow import NotificationsUnitOfWork
from shared.auth import Directory
from shared.bus.base import Bus
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
) -> Service:
    settings = settings or NotificationsSettings()
    runtime = build_runtime(NAME, settings, bus=bus, directory=directory, run_workers=run_workers)
    uow_factory = partial(runtime.unit_of_work, NotificationsUnitOfWork)
    wakeup = threading.Event()
    runtime.add_consumer(notification_handlers(uow_factory, wakeup))
    dispatcher = Dispatcher(uow_factory, settings, wakeup, transport=transport)
    runtime.extra_workers.append(dispatcher.run)
    app = service_app(
        runtime,
        title="Relais notifications",
        description=DESCRIPTION,
        routers=[build_router(uow_factory, settings)],
        resources=capability_resources(),
    )
    app.state.dispatcher = dispatcher
    return Service(runtime, app)
