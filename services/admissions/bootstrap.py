"""Composition root of the admissions service: the app, the workers and the tests all start here."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from services.admissions.entrypoints import fhir
from services.admissions.uow import AdmissionsUnitOfWork
from shared.auth import Directory
from shared.bus.base import Bus
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
    {"type": "MessageHeader", "interaction": []},
)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def bootstrap(
    settings: AdmissionsSettings | None = None,
    *,
    bus: Bus | None = None,
    directory: Directory | None = None,
    run_workers: bool = True,
    clock: Callable[[], datetime] | None = None,
) -> Service:
    settings = settings or AdmissionsSettings()
    runtime = build_runtime(NAME, settings, bus=bus, directory=directory, run_workers=run_workers)
    app = service_app(
        runtime,
        title="Relais admissions",
        description=(
            "Hospital admissions as FHIR messages, routed to the patient's treating team (full), the DAC "
            "(open case) or the CPTS (minimised, no team); and the registry of treating teams (CareTeam)."
        ),
        routers=[fhir.router],
        resources=RESOURCES,
        messaging=True,
    )
    app.state.admissions = fhir.AdmissionsContext(
        unit_of_work=lambda: runtime.unit_of_work(AdmissionsUnitOfWork),
        clock=clock or _utcnow,
        secret=settings.secret_key,
        max_body_bytes=settings.max_body_bytes,
    )
    return Service(runtime, app)
