"""Composition root of the discharge service: the app, the workers and the tests all start here."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import cast

from services.discharge.adapters.orm import retention_rules
from services.discharge.deps import Clock, Deps
from services.discharge.domain import Policy
from services.discharge.entrypoints.api import nde_router, router
from services.discharge.entrypoints.consumers import careteam_handlers
from services.discharge.entrypoints.hl7 import forwarded_handlers
from services.discharge.entrypoints.timers import TimerWorker
from services.discharge.messagebus import MessageBus
from services.discharge.uow import DischargeUnitOfWork
from shared.auth import Directory
from shared.bus.base import Bus
from shared.bus.worker import ConsumerLoop
from shared.fhir.nde import DECLARATION_PROFILE
from shared.identifiers import patient_key
from shared.retention import RetentionWorker
from shared.runtime import Runtime, build_runtime
from shared.service import Service, service_app
from shared.settings import DischargeSettings

NAME = "discharge"

RESOURCES = [
    {
        "type": "Task",
        "interaction": [{"code": "read"}, {"code": "search-type"}],
        "operation": [
            {"name": name, "definition": f"https://relais.example.org/fhir/OperationDefinition/Task-{name}"}
            for name in ("accept", "decline", "cancel", "complete", "assign")
        ],
    },
    # NdE declarations of a discharge (SOR), at /discharge/nde/fhir/CommunicationRequest.
    {"type": "CommunicationRequest", "supportedProfile": [DECLARATION_PROFILE], "interaction": [{"code": "create"}]},
]


def system_clock() -> datetime:
    return datetime.now(UTC)


@dataclass
class DischargeService(Service):
    bus: MessageBus | None = None
    clock: Clock = system_clock
    policy: Policy = field(default_factory=Policy)
    timers: TimerWorker | None = None
    careteam_consumer: ConsumerLoop | None = None

    def unit_of_work(self) -> DischargeUnitOfWork:
        return _unit_of_work(self.runtime)


def _unit_of_work(runtime: Runtime) -> DischargeUnitOfWork:
    return cast(DischargeUnitOfWork, runtime.unit_of_work(DischargeUnitOfWork))


def bootstrap(
    settings: DischargeSettings | None = None,
    *,
    bus: Bus | None = None,
    directory: Directory | None = None,
    run_workers: bool = True,
    clock: Clock | None = None,
) -> DischargeService:
    settings = settings or DischargeSettings()
    runtime = build_runtime(NAME, settings, bus=bus, directory=directory, run_workers=run_workers)
    # Purge what has done its job (kernel rules and this service's), hourly, supervised like every worker.
    retention = RetentionWorker.for_settings(runtime.engine, settings, extra=retention_rules(settings), source=NAME)
    runtime.extra_workers.append(retention.run)
    deps = Deps(
        clock=clock or system_clock,
        policy=Policy(
            handoff_expiry=timedelta(hours=settings.handoff_expiry_hours),
            followup_grace=timedelta(hours=settings.followup_grace_hours),
            followup_reminder=timedelta(hours=settings.followup_reminder_hours),
        ),
        pseudonymise=partial(_pseudonymise, settings.secret_key),
        record_refusal=runtime.record_refusal,
        settings=settings,
        organisation=runtime.directory.get,
    )
    messagebus = MessageBus(partial(_unit_of_work, runtime), deps)
    # The care-team mirror, and the HL7 v2 discharges the admissions-hosted MLLP door forwards (docs/hl7v2.md).
    consumer = runtime.add_consumer({**careteam_handlers(messagebus), **forwarded_handlers(messagebus)})
    timers = TimerWorker(messagebus, interval=settings.timer_interval_seconds)
    runtime.extra_workers.append(timers.run)
    app = service_app(
        runtime,
        title="Relais discharge",
        description=(
            "Hospital discharges, the hospital-to-team handoff (FHIR Task), follow-up deadlines and their "
            "escalation to the CPTS and the DAC."
        ),
        routers=[router, nde_router],
        resources=RESOURCES,
        messaging=True,
    )
    app.state.messagebus = messagebus
    return DischargeService(
        runtime,
        app,
        bus=messagebus,
        clock=deps.clock,
        policy=deps.policy,
        timers=timers,
        careteam_consumer=consumer,
    )


def _pseudonymise(secret: str, system: str, value: str) -> str:
    return patient_key(system, value, secret)
