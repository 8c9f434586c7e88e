"""HTTP routes of the admissions service: parse, check the caller, build a command, hand it to its handler."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from pydantic import BaseModel, Field

from services.admissions import domain, handlers, intake, views
from services.admissions.uow import AdmissionsUnitOfWork
from shared.api.responses import FhirResponse
from shared.auth import Principal, current_principal
from shared.errors import BadRequest, Forbidden
from shared.events import Role
from shared.fhir.encounter import patient_identity
from shared.fhir.intake import check_content_type, parse_json, parse_message_bundle
from shared.fhir.models import Identifier


@dataclass
class AdmissionsContext:
    """What the routes need, set once by the composition root."""

    unit_of_work: Callable[[], AdmissionsUnitOfWork]
    clock: Callable[[], datetime]
    secret: str
    max_body_bytes: int


def _ctx(request: Request) -> AdmissionsContext:
    return request.app.state.admissions


def _audit_denied(request: Request, principal: Principal, action: str, reason: str) -> None:
    uow = _ctx(request).unit_of_work()
    with uow:
        uow.audit.record(
            action,
            outcome="denied",
            organisation_id=principal.organisation_id,
            role=principal.role.value,
            resource=request.url.path,
            detail={"reason": reason},
        )
        uow.commit()


def allow(*roles: Role) -> Callable[..., Principal]:
    """Like the kernel's require_role, and the refusal is written to the audit log."""
    allowed = frozenset(roles)

    def dependency(request: Request, principal: Principal = Depends(current_principal)) -> Principal:
        if principal.role not in allowed:
            _audit_denied(request, principal, f"{request.method} {request.scope.get('route').path}", "role")
            names = ", ".join(sorted(r.value for r in allowed))
            raise Forbidden(
                f"this operation is for the {names} role; your organisation is a {principal.role.value}"
            )
        return principal

    return dependency


async def _fhir_json(request: Request) -> dict[str, Any]:
    check_content_type(request.headers.get("content-type"))
    return parse_json(await request.body())


router = APIRouter(prefix="/admissions", tags=["admissions"])


@router.post(
    "/fhir/$process-message",
    summary="Hospital admission, correction or cancellation (FHIR message Bundle)",
    response_class=FhirResponse,
)
async def process_message(
    request: Request, principal: Principal = Depends(allow(Role.HOSPITAL))
) -> FhirResponse:
    ctx = _ctx(request)
    body = await request.body()
    message = parse_message_bundle(body, request.headers.get("content-type"), ctx.max_body_bytes)
    try:
        command = intake.admission_command(message, principal.organisation_id)
    except Forbidden as exc:
        await run_in_threadpool(
            _audit_denied, request, principal, "admission.process-message", exc.diagnostics
        )
        raise
    response = await run_in_threadpool(
        handlers.handle_admission_message, command, ctx.unit_of_work(), ctx.clock, ctx.secret
    )
    return FhirResponse(response)


# --- CareTeam ------------------------------------------------------------------------------------------


def _location(careteam_id: str) -> str:
    return f"{views.BASE}/CareTeam/{careteam_id}"


@router.post(
    "/fhir/CareTeam",
    summary="A treating team enrols a patient (ANS Cercle de soins)",
    status_code=201,
    response_class=FhirResponse,
)
async def create_careteam(request: Request, principal: Principal = Depends(allow(Role.TEAM))) -> FhirResponse:
    ctx = _ctx(request)
    data = await _fhir_json(request)
    try:
        command = intake.enrol_command(data, principal.organisation_id, ctx.clock())
    except Forbidden as exc:
        await run_in_threadpool(_audit_denied, request, principal, "careteam.create", exc.diagnostics)
        raise
    view = await run_in_threadpool(handlers.enrol_patient, command, ctx.unit_of_work(), ctx.clock, ctx.secret)
    return FhirResponse(view.resource, status_code=201, headers={"Location": _location(view.id)})


@router.get("/fhir/CareTeam", summary="The caller's patients (searchset)", response_class=FhirResponse)
def search_careteams(
    request: Request, status: str | None = None, principal: Principal = Depends(allow(Role.TEAM))
) -> FhirResponse:
    if status not in (None, "active", "inactive"):
        raise BadRequest("status must be active or inactive", expression=["status"])
    found = handlers.list_careteams(principal, _ctx(request).unit_of_work(), status)
    return FhirResponse(views.searchset([v.resource for v in found], str(request.url)))


@router.get(
    "/fhir/CareTeam/{careteam_id}", summary="One of the caller's care teams", response_class=FhirResponse
)
def read_careteam(
    request: Request, careteam_id: str, principal: Principal = Depends(allow(Role.TEAM))
) -> FhirResponse:
    return FhirResponse(handlers.get_careteam(careteam_id, principal, _ctx(request).unit_of_work()).resource)


@router.post(
    "/fhir/CareTeam/{careteam_id}/$change-referent",
    summary="Change the team referent: ends the current participant period and starts another",
    response_class=FhirResponse,
)
async def change_referent(
    request: Request, careteam_id: str, principal: Principal = Depends(allow(Role.TEAM))
) -> FhirResponse:
    ctx = _ctx(request)
    data = await _fhir_json(request)
    command = intake.change_referent_command(data, principal.organisation_id, careteam_id, ctx.clock())
    view = await run_in_threadpool(
        handlers.change_referent, command, principal, ctx.unit_of_work(), ctx.clock
    )
    return FhirResponse(view.resource)


@router.delete("/fhir/CareTeam/{careteam_id}", summary="End the enrolment", response_class=FhirResponse)
def end_careteam(
    request: Request, careteam_id: str, principal: Principal = Depends(allow(Role.TEAM))
) -> FhirResponse:
    ctx = _ctx(request)
    command = domain.EndEnrolment(principal.organisation_id, careteam_id)
    return FhirResponse(handlers.end_enrolment(command, principal, ctx.unit_of_work(), ctx.clock).resource)


# --- Consent -------------------------------------------------------------------------------------------


@router.post(
    "/fhir/Consent",
    summary="Record the patient's opposition (deny) or agreement (permit) to sharing",
    status_code=201,
    response_class=FhirResponse,
)
async def create_consent(
    request: Request, principal: Principal = Depends(allow(Role.TEAM, Role.HOSPITAL))
) -> FhirResponse:
    ctx = _ctx(request)
    data = await _fhir_json(request)
    command = intake.consent_command(data, principal.organisation_id)
    consent_id = await run_in_threadpool(
        handlers.record_consent, command, ctx.unit_of_work(), ctx.clock, ctx.secret
    )
    return FhirResponse(
        {**data, "id": consent_id},
        status_code=201,
        headers={"Location": f"{views.BASE}/Consent/{consent_id}"},
    )


# --- DAC cases and territories (plain JSON) ---------------------------------------------------------------


class PatientIdentifier(BaseModel):
    system: str = Field(description="INS-NIR OID or a local identifier system")
    value: str


class DacCaseIn(BaseModel):
    patient: PatientIdentifier


class TerritoryIn(BaseModel):
    cpts: str | None = Field(
        default=None, description="organisation id of the CPTS covering this postal code"
    )
    dac: str | None = Field(default=None, description="organisation id of the DAC covering this postal code")


@router.post("/dac-cases", summary="The DAC opens a complex case for a patient", status_code=201)
def open_dac_case(
    request: Request, body: DacCaseIn, principal: Principal = Depends(allow(Role.DAC))
) -> Response:
    ctx = _ctx(request)
    identifier = Identifier(system=body.patient.system, value=body.patient.value)
    identity = patient_identity([identifier], "patient")
    view = handlers.open_dac_case(
        domain.OpenDacCase(principal.organisation_id, identity), ctx.unit_of_work(), ctx.clock, ctx.secret
    )
    return FhirResponse(
        view,
        status_code=201,
        media_type="application/json",
        headers={"Location": f"/admissions/dac-cases/{view['id']}"},
    )


@router.delete("/dac-cases/{case_id}", summary="The DAC closes its case")
def close_dac_case(
    request: Request, case_id: str, principal: Principal = Depends(allow(Role.DAC))
) -> Response:
    ctx = _ctx(request)
    view = handlers.close_dac_case(
        domain.CloseDacCase(principal.organisation_id, case_id), principal, ctx.unit_of_work(), ctx.clock
    )
    return FhirResponse(view, media_type="application/json")


@router.put("/territories/{postal_code}", summary="Which CPTS and DAC cover a postal code")
def put_territory(
    request: Request, postal_code: str, body: TerritoryIn, principal: Principal = Depends(allow(Role.ADMIN))
) -> Response:
    if not (postal_code.isdigit() and len(postal_code) == 5) and postal_code[:2] not in ("2A", "2B"):
        raise BadRequest("postal code must be 5 digits", expression=["postal_code"])
    ctx = _ctx(request)
    view = handlers.set_territory(
        domain.SetTerritory(postal_code, body.cpts, body.dac), ctx.unit_of_work(), ctx.clock
    )
    return FhirResponse(view, media_type="application/json")
