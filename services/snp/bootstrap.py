"""Composition root of the snp service: the app, the workers and the tests all start here."""

from __future__ import annotations

from typing import cast

from services.snp.deps import Clock, Deps, system_clock
from services.snp.entrypoints.api import router
from services.snp.entrypoints.consumers import careteam_handlers
from services.snp.entrypoints.workers import deadline_worker
from services.snp.messagebus import MessageBus
from services.snp.uow import SnpUnitOfWork
from shared.auth import Directory
from shared.bus.base import Bus
from shared.identifiers import patient_key
from shared.retention import RetentionWorker
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
    runtime = build_runtime(NAME, settings, bus=bus, directory=directory, run_workers=run_workers)
    # Purge what has done its job (kernel rules), hourly, supervised like every worker.
    runtime.extra_workers.append(RetentionWorker.for_settings(runtime.engine, settings, source=NAME).run)
    secret = settings.secret_key

    def unit_of_work() -> SnpUnitOfWork:
        return cast(SnpUnitOfWork, runtime.unit_of_work(SnpUnitOfWork))

    deps = Deps(
        clock=clock or system_clock,
        pseudonymise=lambda system, value: patient_key(system, value, secret),
        settings=settings,
        record_refusal=runtime.record_refusal,
    )
    messagebus = MessageBus(unit_of_work, deps)
    runtime.add_consumer(careteam_handlers(messagebus))
    runtime.extra_workers.append(deadline_worker(messagebus, worker_interval))
    app = service_app(
        runtime, title="Relais SNP", description=DESCRIPTION, routers=[router], resources=RESOURCES
    )
    app.state.bus = messagebus
    return Service(runtime, app)
