"""Composition root of the snp service: the app, the workers and the tests all start here."""

from __future__ import annotations

from functools import partial

from services.snp.entrypoints.api import build_router
from services.snp.entrypoints.workers import careteam_handlers, deadline_worker
from services.snp.handlers import Clock, system_clock
from services.snp.uow import SnpUnitOfWork
from shared.auth import Directory
from shared.bus.base import Bus
from shared.runtime import build_runtime
from shared.service import Service, service_app
from shared.settings import SnpSettings

NAME = "snp"
RESOURCES = [
    {"type": "Schedule", "interaction": [{"code": "create"}]},
    {
        "type": "Slot",
        "interaction": [{"code": "create"}, {"code": "delete"}],
        "operation": [{"name": "bulk", "definition": "Bundle of Schedules and Slots (transaction or batch)"}],
    },
    {"type": "ServiceRequest", "interaction": [{"code": "create"}, {"code": "read"}]},
    {
        "type": "Appointment",
        "interaction": [{"code": "read"}],
        "operation": [{"name": "status", "definition": "booked | fulfilled | noshow | cancelled"}],
    },
]
DESCRIPTION = (
    "Unscheduled care (soins non programmés): effecteurs publish free SNP slots, the SAS posts requests, "
    "Relais places them (own team first, then the territory pool) and the CPTS follows its territory."
)


def bootstrap(
    settings: SnpSettings | None = None,
    *,
    bus: Bus | None = None,
    directory: Directory | None = None,
    run_workers: bool = True,
    clock: Clock | None = None,
    worker_interval: float = 1.0,
) -> Service:
    settings = settings or SnpSettings()
    clock = clock or system_clock
    runtime = build_runtime(NAME, settings, bus=bus, directory=directory, run_workers=run_workers)
    uow_factory = partial(runtime.unit_of_work, SnpUnitOfWork)
    runtime.add_consumer(careteam_handlers(uow_factory, clock))
    runtime.extra_workers.append(deadline_worker(uow_factory, clock, worker_interval))
    router = build_router(uow_factory, clock, settings.secret_key)
    app = service_app(
        runtime, title="Relais SNP", description=DESCRIPTION, routers=[router], resources=RESOURCES
    )
    app.state.uow_factory = uow_factory
    app.state.clock = clock
    return Service(runtime, app)
