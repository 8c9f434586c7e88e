"""Composition root of the notifications service: the app, the workers and the tests all start here."""

from __future__ import annotations

from shared.auth import Directory
from shared.bus.base import Bus
from shared.runtime import build_runtime
from shared.service import Service, service_app
from shared.settings import NotificationsSettings

NAME = "notifications"


def bootstrap(
    settings: NotificationsSettings | None = None,
    *,
    bus: Bus | None = None,
    directory: Directory | None = None,
    run_workers: bool = True,
) -> Service:
    settings = settings or NotificationsSettings()
    runtime = build_runtime(NAME, settings, bus=bus, directory=directory, run_workers=run_workers)
    app = service_app(runtime, title="Relais notifications", description="Not built yet: operations endpoints only.")
    return Service(runtime, app)
