"""Composition root of the snp service: the app, the workers and the tests all start here."""

from __future__ import annotations

from shared.auth import Directory
from shared.bus.base import Bus
from shared.runtime import build_runtime
from shared.service import Service, service_app
from shared.settings import SnpSettings

NAME = "snp"


def bootstrap(
    settings: SnpSettings | None = None,
    *,
    bus: Bus | None = None,
    directory: Directory | None = None,
    run_workers: bool = True,
) -> Service:
    settings = settings or SnpSettings()
    runtime = build_runtime(NAME, settings, bus=bus, directory=directory, run_workers=run_workers)
    app = service_app(runtime, title="Relais SNP", description="Not built yet: operations endpoints only.")
    return Service(runtime, app)
