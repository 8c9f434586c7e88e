"""Composition root of the admissions service: the app, the workers and the tests all start here."""

from __future__ import annotations

from typing import cast

from services.admissions.deps import Clock, Deps, system_clock
from services.admissions.entrypoints import fhir, panels, teams
from services.admissions.entrypoints.consumers import registry_update_handlers
from services.admissions.entrypoints.panel_worker import PanelExpiry
from services.admissions.entrypoints.workers import TeamChangeExpiry
from services.admissions.messagebus import MessageBus
from services.admissions.uow import AdmissionsUnitOfWork
from shared.auth import Directory
from shared.bus.base import Bus
from shared.directory.lookup import DirectoryLookup
from shared.fhir.encounter import PatientIdentity
from shared.fhir.nde import DECLARATION_PROFILE
from shared.identifiers import patient_key
from shared.retention import RetentionWorker
from shared.runtime import build_runtime
from shared.service import Service, service_app
from shared.settings import AdmissionsSettings

NAME = "admissions"

RESOURCES = (
    {
        "type": "CareTeam",
        "interaction": [{"code": "create"}, {"code": "read"}, {"code": "search-type"}, {"code": "delete"}],
        "operation": [
            {
                "name": "change-referent",
                "definition": "https://relais.example.org/fhir/OperationDefinition/CareTeam-change-referent",
            }
        ],
    },
    {"type": "Consent", "interaction": [{"code": "create"}]},
    # A team's patient list (Da Vinci Member Attribution shape): PUT replaces it, $add and $remove change it.
    {
        "type": "Group",
        "interaction": [{"code": "update"}],
        "operation": [
            {"name": "add", "definition": "https://relais.example.org/fhir/OperationDefinition/Group-add"},
            {"name": "remove", "definition": "https://relais.example.org/fhir/OperationDefinition/Group-remove"},
        ],
    },
    {"type": "MessageHeader", "interaction": []},
    # NdE declarations of an admission (ADM), at /admissions/nde/fhir/CommunicationRequest.
    {"type": "CommunicationRequest", "supportedProfile": [DECLARATION_PROFILE], "interaction": [{"code": "create"}]},
)


def bootstrap(
    settings: AdmissionsSettings | None = None,
    *,
    bus: Bus | None = None,
    directory: Directory | None = None,
    run_workers: bool = True,
    clock: Clock | None = None,
) -> Service:
    settings = settings or AdmissionsSettings()
    runtime = build_runtime(NAME, settings, bus=bus, directory=directory, run_workers=run_workers)
    # Purge what has done its job (kernel rules), hourly, supervised like every worker.
    runtime.extra_workers.append(RetentionWorker.for_settings(runtime.engine, settings, source=NAME).run)
    app = service_app(
        runtime,
        title="Relais admissions",
        description=(
            "Hospital admissions as FHIR messages, routed to the patient's treating team (full), the DAC "
            "(open case) or the CPTS (minimised, no team); and the registry of treating teams (CareTeam)."
        ),
        routers=[fhir.router, fhir.nde_router, teams.router, panels.router],
        resources=RESOURCES,
        messaging=True,
    )
    secret = settings.secret_key

    def pseudonymise(identity: PatientIdentity) -> str:
        return patient_key(identity.system, identity.value, secret)

    deps = Deps(
        clock=clock or system_clock,
        pseudonymise=pseudonymise,
        record_refusal=runtime.record_refusal,
        settings=settings,
    )

    def unit_of_work() -> AdmissionsUnitOfWork:
        # The kernel's factory is typed for the base class; it builds the class it is given.
        return cast(AdmissionsUnitOfWork, runtime.unit_of_work(AdmissionsUnitOfWork))

    app.state.bus = MessageBus(unit_of_work, deps)
    app.state.directory_lookup = DirectoryLookup(runtime.directory.engine)
    runtime.add_consumer(registry_update_handlers(app.state.bus))
    expiry = TeamChangeExpiry(app.state.bus, interval=settings.team_change_interval_seconds)
    runtime.extra_workers.append(expiry.run)
    runtime.extra_workers.append(PanelExpiry(app.state.bus, interval=settings.panel_interval_seconds).run)
    return Service(runtime, app)
