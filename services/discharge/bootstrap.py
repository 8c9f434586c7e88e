"""Composition root of the discharge service: the app, the workers and the tests all start here."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from services.discharge.domain import Policy
from services.discharge.entrypoints.api import ApiDeps, build_router
from services.discharge.entrypoints.consumers import careteam_handlers
from services.discharge.entrypoints.timers import TimerWorker
from services.discharge.handlers import Clock
from services.discharge.uow import DischargeUnitOfWork
from shared.auth import Directory
from shared.bus.base import Bus
from shared.bus.worker import ConsumerLoop
from shared.runtime import build_runtime
from shared.service import Service, service_app
from shared.settings import DischargeSettings

NAME = "discharge"

RESOURCES = [
    {
        "type": "Task",
        "interaction": [{"code": "read"}],
        "operation": [
            {"name": name, "definition": f"https://relais.example.org/fhir/OperationDefinition/Task-{name}"}
            for name in ("accept", "decline", "cancel", "complete")
        ],
    }
]


def system_clock() -> datetime:
    return datetime.now(UTC)


@dataclass
class DischargeService(Service):
    clock: Clock = system_clock
    policy: Policy = field(default_factory=Policy)
    timers: TimerWorker | None = None
    careteam_consumer: ConsumerLoop | None = None

    def unit_of_work(self) -> DischargeUnitOfWork:
        return self.runtime.unit_of_work(DischargeUnitOfWork)  # type: ignore[return-value]


def bootstrap(
    settings: DischargeSettings | None = None,
    *,
    bus: Bus | None = None,
    directory: Directory | None = None,
    run_workers: bool = True,
    clock: Clock | None = None,
) -> DischargeService:
    settings = settings or DischargeSettings()
    clock = clock or system_clock
    runtime = build_runtime(NAME, settings, bus=bus, directory=directory, run_workers=run_workers)
    policy = Policy(
        handoff_expiry=timedelta(hours=settings.handoff_expiry_hours),
        followup_grace=timedelta(hours=settings.followup_grace_hours),
    )

    def unit_of_work() -> DischargeUnitOfWork:
        return runtime.unit_of_work(DischargeUnitOfWork)  # type: ignore[return-value]

    consumer = runtime.add_consumer(careteam_handlers(unit_of_work, clock))
    timers = TimerWorker(unit_of_work, clock=clock, policy=policy, interval=settings.timer_interval_seconds)
    runtime.extra_workers.append(timers.run)
    router = build_router(ApiDeps(unit_of_work, clock, policy, settings.secret_key, settings.max_body_bytes))
    app = service_app(
        runtime,
        title="Relais discharge",
        description=(
            "Hospital discharges, the hospital-to-team handoff (FHIR Task), follow-up deadlines and their "
            "escalation to the CPTS and the DAC."
        ),
        routers=[router],
        resources=RESOURCES,
        messaging=True,
    )
    return DischargeService(
        runtime, app, clock=clock, policy=policy, timers=timers, careteam_consumer=consumer
    )
