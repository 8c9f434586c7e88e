"""HTTP routes of the snp service (thin: authenticate, parse, build a command, hand it to a handler)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from sqlalchemy.exc import IntegrityError

from services.snp import handlers
from services.snp.commands import ChangeAppointmentStatus, WithdrawSlot
from services.snp.domain import PARIS
from services.snp.entrypoints.parsing import publish_command, request_command, status_of
from services.snp.resources import appointment_resource, service_request_resource
from services.snp.uow import SnpUnitOfWork
from shared.api.responses import FhirResponse
from shared.auth import Principal, require_role
from shared.errors import BadRequest
from shared.events import Role
from shared.fhir.intake import check_content_type, parse_json
from shared.fhir.outcome import operation_outcome

_REASONS = {
    200: "200 OK",
    201: "201 Created",
    400: "400 Bad Request",
    403: "403 Forbidden",
    409: "409 Conflict",
    422: "422 Unprocessable Entity",
}

Team = Annotated[Principal, Depends(require_role(Role.TEAM))]
Sas = Annotated[Principal, Depends(require_role(Role.SAS))]
TeamOrSas = Annotated[Principal, Depends(require_role(Role.TEAM, Role.SAS))]
Cpts = Annotated[Principal, Depends(require_role(Role.CPTS))]


async def _body(request: Request) -> dict:
    check_content_type(request.headers.get("content-type"))
    return parse_json(await request.body())


def _when(value: str | None, default: datetime, *, end: bool = False) -> datetime:
    if not value:
        return default
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            # A date means the whole local day; `to=2026-11-22` includes the 22nd.
            moment = datetime.combine(day + timedelta(days=1) if end else day, time(), tzinfo=PARIS)
            return moment
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(f"{value!r} is not an ISO date or date-time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=PARIS)


def build_router(uow_factory: Callable[[], SnpUnitOfWork], clock: handlers.Clock, secret: str) -> APIRouter:
    router = APIRouter(prefix="/snp")

    def publish(data: dict, principal: Principal) -> FhirResponse:
        command = publish_command(data, principal.organisation_id)
        results = handlers.publish_availability(uow_factory(), command, clock)
        entries = []
        for result in results:
            response = {"status": _REASONS.get(result.status, str(result.status))}
            if result.location:
                response["location"] = result.location
            if result.diagnostics:
                response["outcome"] = operation_outcome("error", "processing", result.diagnostics)
            entries.append({"response": response})
        kind = "transaction-response" if command.atomic else "batch-response"
        return FhirResponse({"resourceType": "Bundle", "type": kind, "entry": entries})

    @router.post(
        "/fhir", tags=["availability"], summary="Publish Schedules and free SNP Slots (transaction or batch)"
    )
    async def post_bundle(request: Request, principal: Team) -> FhirResponse:
        return publish(await _body(request), principal)

    @router.post("/fhir/Slot/$bulk", tags=["availability"], summary="Publish Schedules and Slots in bulk")
    async def post_slots(request: Request, principal: Team) -> FhirResponse:
        return publish(await _body(request), principal)

    @router.delete(
        "/fhir/Slot/{slot_id}",
        tags=["availability"],
        summary="Withdraw one of your free slots",
        status_code=204,
    )
    def delete_slot(slot_id: str, principal: Team) -> Response:
        handlers.withdraw_slot(uow_factory(), WithdrawSlot(principal.organisation_id, slot_id), clock)
        return Response(status_code=204)

    @router.post("/fhir/ServiceRequest", tags=["requests"], summary="SAS: request an SNP appointment")
    async def post_request(request: Request, principal: Sas) -> FhirResponse:
        command = request_command(await _body(request), principal.organisation_id)
        try:
            view = handlers.request_snp(uow_factory(), command, clock, secret)
        except IntegrityError:
            # The same request sent twice at once: the second finds the first.
            view = handlers.request_snp(uow_factory(), command, clock, secret)
        headers = {"Location": f"/snp/fhir/ServiceRequest/{view.request.id}"}
        return FhirResponse(view.bundle(), status_code=201 if view.created else 200, headers=headers)

    @router.get("/fhir/ServiceRequest/{request_id}", tags=["requests"])
    def get_request(request_id: str, principal: TeamOrSas) -> FhirResponse:
        view = handlers.get_request(uow_factory(), request_id, principal.organisation_id, principal.role)
        return FhirResponse(service_request_resource(view.request))

    @router.get("/fhir/Appointment/{appointment_id}", tags=["appointments"])
    def get_appointment(appointment_id: str, principal: TeamOrSas) -> FhirResponse:
        view = handlers.get_appointment(
            uow_factory(), appointment_id, principal.organisation_id, principal.role
        )
        return FhirResponse(appointment_resource(view.appointment, view.request))

    @router.post(
        "/fhir/Appointment/{appointment_id}/$status",
        tags=["appointments"],
        summary="Effecteur or SAS: booked, fulfilled, noshow or cancelled",
    )
    async def post_status(appointment_id: str, request: Request, principal: TeamOrSas) -> FhirResponse:
        status = status_of(await _body(request))
        command = ChangeAppointmentStatus(principal.organisation_id, principal.role, appointment_id, status)
        view = handlers.change_appointment_status(uow_factory(), command, clock)
        return FhirResponse(appointment_resource(view.appointment, view.request))

    @router.get("/dashboard", tags=["dashboard"], summary="CPTS: aggregates of its territory over a period")
    def get_dashboard(
        principal: Cpts,
        territory: str | None = None,
        start: Annotated[str | None, Query(alias="from")] = None,
        end: Annotated[str | None, Query(alias="to")] = None,
    ) -> JSONResponse:
        now = clock()
        to = _when(end, now, end=True)
        since = _when(start, to - timedelta(days=7))
        if since >= to:
            raise BadRequest("`from` must be before `to`")
        body = handlers.territory_dashboard(uow_factory(), principal.organisation_id, territory, since, to)
        return JSONResponse(body)

    @router.get(
        "/dashboard/page",
        tags=["dashboard"],
        summary="Moved: the CPTS dashboard page is /snp/app/dashboard (sign in once, no token in the page)",
        response_class=RedirectResponse,
        status_code=308,
    )
    def get_page(request: Request) -> RedirectResponse:
        query = f"?{request.url.query}" if request.url.query else ""
        return RedirectResponse(f"/snp/app/dashboard{query}", status_code=308)

    return router
