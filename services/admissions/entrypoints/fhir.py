"""HTTP routes of the admissions service: thin — authenticate, parse, build a command, hand it to the bus."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field, ValidationError

from services.admissions import cercle, commands, intake, views
from services.admissions.entrypoints.hl7 import admissions_fhir_door
from services.admissions.messagebus import MessageBus
from services.admissions.uow import AdmissionsUnitOfWork
from shared.api.body import RawBody
from shared.api.responses import FhirResponse
from shared.auth import Principal, audit_refusal, require_role
from shared.doors import Caller
from shared.errors import BadRequest, Forbidden, Unprocessable
from shared.events import Role
from shared.fhir.encounter import patient_identity
from shared.fhir.intake import check_content_type, parse_json, parse_message_bundle
from shared.fhir.models import Identifier
from shared.fhir.nde import NDE_DISCHARGE_ENDPOINT, declaration_command, declaration_paths, declared
from shared.fhir.outcome import issue, outcome_from_issues
from shared.routing import ADMISSION_EVENTS

ENROLMENT_RECORDED = (
    "enrolment request recorded: the CareTeam at Location becomes active once the patient is yours "
    "(at once, or when a change of treating team is settled)"
)


def _bus(request: Request) -> MessageBus:
    bus: MessageBus = request.app.state.bus
    return bus


def _uow(bus: Annotated[MessageBus, Depends(_bus)]) -> AdmissionsUnitOfWork:
    return bus.unit_of_work()


def _fhir_json(request: Request, raw: RawBody) -> dict[str, Any]:
    check_content_type(request.headers.get("content-type"))
    return parse_json(raw)


Bus = Annotated[MessageBus, Depends(_bus)]
Uow = Annotated[AdmissionsUnitOfWork, Depends(_uow)]
Body = Annotated[dict[str, Any], Depends(_fhir_json)]
Hospital = Annotated[Principal, Depends(require_role(Role.HOSPITAL))]
Team = Annotated[Principal, Depends(require_role(Role.TEAM))]
TeamOrHospital = Annotated[Principal, Depends(require_role(Role.TEAM, Role.HOSPITAL))]
Dac = Annotated[Principal, Depends(require_role(Role.DAC))]
Admin = Annotated[Principal, Depends(require_role(Role.ADMIN))]
ConsentReader = Annotated[Principal, Depends(require_role(Role.TEAM, Role.HOSPITAL, Role.ADMIN))]
Coordinator = Annotated[Principal, Depends(require_role(Role.ADMIN, Role.CPTS, Role.DAC))]

router = APIRouter(prefix="/admissions", tags=["admissions"])


@router.post(
    "/fhir/$process-message",
    summary="Hospital admission, correction or cancellation (FHIR message Bundle)",
    response_class=FhirResponse,
)
def process_message(request: Request, principal: Hospital, bus: Bus, body: RawBody) -> FhirResponse:
    # A plain `def`: parsing a large Bundle runs in the threadpool, never on the event loop.
    door = admissions_fhir_door(bus, request.headers.get("content-type"), parse=parse_message_bundle)
    return FhirResponse(door(body, Caller(principal.organisation_id, principal.role, "fhir", request.url.path)))


# --- NdE event declaration (ANS Notification d'évènements, flux 3) ---------------------------------------

nde_router = APIRouter(prefix="/admissions/nde/fhir", tags=["NdE"])


@nde_router.post(
    "/CommunicationRequest",
    summary="NdE event declaration (profile nde-eventdeclaration): ADM here; SOR goes to discharge",
    status_code=201,
    response_class=FhirResponse,
)
def declare_event(request: Request, principal: Hospital, bus: Bus, body: RawBody) -> FhirResponse:
    declaration, command = declaration_command(
        body,
        request.headers.get("content-type"),
        bus.deps.settings.max_body_bytes,
        accepted=ADMISSION_EVENTS,
        other_door=NDE_DISCHARGE_ENDPOINT,
        build=lambda message: intake.admission_command(message, principal.organisation_id),
        refused=lambda: audit_refusal(request, principal, "another hospital's declaration"),
    )
    with declaration_paths():
        bus.handle(command)
    return FhirResponse(**declared(declaration))


# --- CareTeam ------------------------------------------------------------------------------------------


def _location(careteam_id: str) -> str:
    return f"{views.BASE}/CareTeam/{careteam_id}"


@router.post(
    "/fhir/CareTeam",
    summary="A treating team enrols a patient (ANS Cercle de soins); a change of team is a request (202)",
    status_code=202,
    response_class=FhirResponse,
)
def create_careteam(request: Request, principal: Team, data: Body, bus: Bus) -> FhirResponse:
    try:
        command = intake.enrol_command(data, principal.organisation_id, bus.deps.clock())
    except Forbidden:
        audit_refusal(request, principal, "enrolment for another organisation")
        raise
    recorded: views.EnrolmentRecorded = bus.handle(command)
    # One answer whether the patient had no team, this team or another: nobody learns who treats a patient.
    location = _location(recorded.careteam_id)
    return FhirResponse(
        outcome_from_issues([issue("information", "informational", ENROLMENT_RECORDED)]),
        status_code=202,
        headers={"Location": location, "Content-Location": location},
    )


@router.post(
    "/fhir",
    summary="ANS Cercle de soins creation transaction: a CareTeam with its Patient and members",
    response_class=FhirResponse,
)
def careteam_transaction(request: Request, principal: Team, data: Body, bus: Bus) -> FhirResponse:
    try:
        command, entries = intake.transaction_command(data, principal.organisation_id, bus.deps.clock())
    except Forbidden:
        audit_refusal(request, principal, "enrolment for another organisation")
        raise
    # Same answer whether the patient had no team or another (then the CareTeam is `proposed`: docs/privacy.md).
    recorded: views.EnrolmentRecorded = bus.handle(command)
    return FhirResponse(cercle.transaction_response(entries, recorded.careteam_id))


@router.get("/fhir/CareTeam", summary="The caller's patients (searchset)", response_class=FhirResponse)
def search_careteams(request: Request, principal: Team, uow: Uow, status: str | None = None) -> FhirResponse:
    if status not in (None, "active", "inactive", "proposed"):
        raise BadRequest("status must be active, inactive or proposed", expression=["status"])
    found = views.list_careteams(uow, principal.organisation_id, status)
    return FhirResponse(views.searchset([v.resource for v in found], str(request.url)))


@router.get("/fhir/CareTeam/{careteam_id}", summary="One of the caller's care teams", response_class=FhirResponse)
def read_careteam(careteam_id: str, principal: Team, uow: Uow, bus: Bus) -> FhirResponse:
    view = views.read_careteam(uow, bus.deps.record_refusal, principal.organisation_id, careteam_id)
    return FhirResponse(view.resource)


@router.post(
    "/fhir/CareTeam/{careteam_id}/$change-referent",
    summary="Change the team referent: ends the current participant period and starts another",
    response_class=FhirResponse,
)
def change_referent(careteam_id: str, principal: Team, data: Body, bus: Bus) -> FhirResponse:
    command = intake.change_referent_command(data, principal.organisation_id, careteam_id, bus.deps.clock())
    view: views.CareTeamView = bus.handle(command)
    return FhirResponse(view.resource)


@router.delete("/fhir/CareTeam/{careteam_id}", summary="End the enrolment", response_class=FhirResponse)
def end_careteam(careteam_id: str, principal: Team, bus: Bus) -> FhirResponse:
    view: views.CareTeamView = bus.handle(commands.EndEnrolment(principal.organisation_id, careteam_id))
    return FhirResponse(view.resource)


# --- Consent -------------------------------------------------------------------------------------------


@router.post(
    "/fhir/Consent",
    summary="Record the patient's opposition (deny) or agreement (permit) to sharing",
    status_code=201,
    response_class=FhirResponse,
)
def create_consent(principal: TeamOrHospital, data: Body, bus: Bus) -> FhirResponse:
    command = intake.consent_command(data, principal.organisation_id, principal.role)
    consent_id = bus.handle(command)
    return FhirResponse(
        {**data, "id": consent_id}, status_code=201, headers={"Location": f"{views.BASE}/Consent/{consent_id}"}
    )


# --- DAC cases and territories (plain JSON) ---------------------------------------------------------------


class PatientIdentifier(BaseModel):
    system: str = Field(description="INS-NIR OID or a local identifier system")
    value: str


class DacReferralIn(BaseModel):
    patient: PatientIdentifier
    dac: str = Field(description="organisation id of the DAC covering the patient's territory")


class TerritoryIn(BaseModel):
    cpts: str | None = Field(default=None, description="organisation id of the CPTS covering this postal code")
    dac: str | None = Field(default=None, description="organisation id of the DAC covering this postal code")


@router.post(
    "/dac-cases",
    summary="The patient's treating team or admitting hospital refers the patient to the territory's DAC",
    status_code=201,
)
def refer_to_dac(body: DacReferralIn, principal: TeamOrHospital, bus: Bus) -> Response:
    try:
        identifier = Identifier(system=body.patient.system, value=body.patient.value)
    except ValidationError:
        raise Unprocessable("patient needs an identifier system (a URI) and a value", expression=["patient"]) from None
    identity = patient_identity([identifier], "patient")
    view = bus.handle(commands.ReferToDac(principal.organisation_id, principal.role, identity, body.dac))
    location = f"/admissions/dac-cases/{view['id']}"
    return FhirResponse(view, status_code=201, media_type="application/json", headers={"Location": location})


@router.delete("/dac-cases/{case_id}", summary="The DAC closes its case")
def close_dac_case(case_id: str, principal: Dac, bus: Bus) -> Response:
    view = bus.handle(commands.CloseDacCase(principal.organisation_id, case_id))
    return FhirResponse(view, media_type="application/json")


# --- change of treating team (plain JSON) ------------------------------------------------------------------


@router.get("/team-changes", summary="Change-of-team requests: those the caller must answer, and its own")
def list_team_changes(principal: Team, uow: Uow) -> Response:
    return FhirResponse(views.team_changes(uow, principal.organisation_id), media_type="application/json")


@router.post("/team-changes/{change_id}/$accept", summary="The current team hands the patient over")
def accept_team_change(change_id: str, principal: Team, bus: Bus) -> Response:
    view = bus.handle(commands.AnswerTeamChange(principal.organisation_id, change_id, accept=True))
    return FhirResponse(view, media_type="application/json")


@router.post("/team-changes/{change_id}/$decline", summary="The current team keeps the patient")
def decline_team_change(change_id: str, principal: Team, bus: Bus) -> Response:
    view = bus.handle(commands.AnswerTeamChange(principal.organisation_id, change_id, accept=False))
    return FhirResponse(view, media_type="application/json")


@router.put("/territories/{postal_code}", summary="Which CPTS and DAC cover a postal code")
def put_territory(postal_code: str, body: TerritoryIn, principal: Admin, bus: Bus) -> Response:
    del principal  # the role check is the point
    if not (postal_code.isdigit() and len(postal_code) == 5) and postal_code[:2] not in ("2A", "2B"):
        raise BadRequest("postal code must be 5 digits", expression=["postal_code"])
    view = bus.handle(commands.SetTerritory(postal_code, body.cpts, body.dac))
    return FhirResponse(view, media_type="application/json")


# --- read-backs: what the caller wrote or may see -------------------------------------------------------------


@router.get("/consents", summary="The patient's consent, for whoever recorded it, treats the patient, or an admin")
def read_consent(patient: str, principal: ConsentReader, uow: Uow, bus: Bus) -> Response:
    system, bar, value = patient.partition("|")
    if not bar or not system or not value:
        raise BadRequest("patient must be system|value (e.g. the INS-NIR OID and the NIR)", expression=["patient"])
    try:
        identifier = Identifier(system=system, value=value)
    except ValidationError:
        raise BadRequest("patient must be system|value", expression=["patient"]) from None
    key = bus.deps.pseudonymise(patient_identity([identifier], "patient"))
    view = views.consent_for(uow, principal.organisation_id, principal.role, key)
    return FhirResponse(view, media_type="application/json")


@router.get("/dac-cases", summary="The calling DAC's cases (status=open for the open ones)")
def list_dac_cases(principal: Dac, uow: Uow, status: str | None = None) -> Response:
    if status not in (None, "open", "all"):
        raise BadRequest("status is open or all", expression=["status"])
    cases = views.dac_cases_of(uow, principal.organisation_id, open_only=status == "open")
    return FhirResponse({"cases": cases}, media_type="application/json")


@router.get("/territories", summary="Mapped postal codes: all for an administrator, the covered ones for a CPTS or DAC")
def list_territories(principal: Coordinator, uow: Uow) -> Response:
    covered_by = None if principal.role is Role.ADMIN else principal.organisation_id
    return FhirResponse({"territories": views.territories_for(uow, covered_by)}, media_type="application/json")
