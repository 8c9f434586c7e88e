"""HTTP routes of the snp service (thin: authenticate, parse, build a command, hand it to the message bus)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from sqlalchemy.exc import IntegrityError

from services.snp import views
from services.snp.adapters.orm import AppointmentRow
from services.snp.commands import ChangeAppointmentStatus, WithdrawSlot
from services.snp.domain import PARIS
from services.snp.entrypoints.parsing import period_day, publish_command, request_command, status_of
from services.snp.entrypoints.sas import booking_command, slot_search
from services.snp.messagebus import MessageBus
from services.snp.resources import appointment_resource, publish_response, service_request_resource
from services.snp.uow import SnpUnitOfWork
from shared.api.body import RawBody
from shared.api.responses import FhirResponse
from shared.auth import Principal, require_role
from shared.errors import BadRequest, Unprocessable
from shared.events import Role
from shared.fhir.intake import check_content_type, parse_json
from shared.validation import check_date_range


def _bus(request: Request) -> MessageBus:
    bus: MessageBus = request.app.state.bus
    return bus


def _uow(bus: Annotated[MessageBus, Depends(_bus)]) -> SnpUnitOfWork:
    return bus.unit_of_work()


def _body(request: Request, raw: RawBody) -> dict:
    check_content_type(request.headers.get("content-type"))
    return parse_json(raw)


Bus = Annotated[MessageBus, Depends(_bus)]
Uow = Annotated[SnpUnitOfWork, Depends(_uow)]
Body = Annotated[dict, Depends(_body)]
Team = Annotated[Principal, Depends(require_role(Role.TEAM))]
Sas = Annotated[Principal, Depends(require_role(Role.SAS))]
TeamOrSas = Annotated[Principal, Depends(require_role(Role.TEAM, Role.SAS))]
Cpts = Annotated[Principal, Depends(require_role(Role.CPTS))]

router = APIRouter(prefix="/snp")
# A dashboard period longer than this is refused (422): a year of facts is the largest useful view.
DASHBOARD_MAX_DAYS = 400
DASHBOARD_DEFAULT_DAYS = 7


def _publish(bus: MessageBus, data: dict, principal: Principal) -> FhirResponse:
    command = publish_command(data, principal.organisation_id)
    results = bus.handle(command)
    return FhirResponse(publish_response(results, atomic=command.atomic))


@router.post("/fhir", tags=["availability"], summary="Publish Schedules and free SNP Slots (transaction or batch)")
def post_bundle(principal: Team, body: Body, bus: Bus) -> FhirResponse:
    return _publish(bus, body, principal)


@router.post("/fhir/Slot/$bulk", tags=["availability"], summary="Publish Schedules and Slots in bulk")
def post_slots(principal: Team, body: Body, bus: Bus) -> FhirResponse:
    return _publish(bus, body, principal)


@router.get(
    "/fhir/Slot",
    tags=["availability"],
    summary="SAS: search the effecteurs' free slots (ANS SAS IG: start ge/le, schedule.actor, _include, _count)",
)
def search_slots(principal: Sas, request: Request, uow: Uow) -> FhirResponse:
    query = slot_search(list(request.query_params.multi_items()))
    base = str(request.base_url).rstrip("/") + "/snp/fhir"

    def links(total: int) -> list[tuple[str, str]]:
        def url(offset: int) -> str:
            pairs = [*query.canonical, ("_count", str(query.count)), ("_offset", str(offset))]
            return f"{base}/Slot?{urlencode(pairs)}"

        found = [("self", url(query.offset))]
        if query.offset + query.count < total and query.count:
            found.append(("next", url(query.offset + query.count)))
        if query.offset:
            found.append(("previous", url(max(0, query.offset - query.count))))
        return found

    bundle = views.search_slots(
        uow,
        query.criteria,
        offset=query.offset,
        count=query.count,
        include_schedule=query.include_schedule,
        include_actors=query.include_actors,
        base=base,
        links=links,
    )
    return FhirResponse(bundle)


@router.delete(
    "/fhir/Slot/{slot_id}", tags=["availability"], summary="Withdraw one of your free slots", status_code=204
)
def delete_slot(slot_id: str, principal: Team, bus: Bus) -> Response:
    bus.handle(WithdrawSlot(principal.organisation_id, slot_id))
    return Response(status_code=204)


@router.post("/fhir/ServiceRequest", tags=["requests"], summary="SAS: request an SNP appointment")
def post_request(principal: Sas, body: Body, bus: Bus) -> FhirResponse:
    command = request_command(body, principal.organisation_id)
    try:
        view = bus.handle(command)
    except IntegrityError:
        # The same request sent twice at once: the second finds the first.
        view = bus.handle(command)
    headers = {"Location": f"/snp/fhir/ServiceRequest/{view.request.id}"}
    return FhirResponse(view.bundle(), status_code=201 if view.created else 200, headers=headers)


@router.get("/fhir/ServiceRequest/{request_id}", tags=["requests"])
def get_request(request_id: str, principal: TeamOrSas, uow: Uow) -> FhirResponse:
    view = views.get_request(uow, request_id, principal.organisation_id, principal.role)
    return FhirResponse(service_request_resource(view.request))


@router.post(
    "/fhir/Appointment",
    tags=["appointments"],
    summary="SAS: book a searched slot for one of its requests (ANS SAS IG Appointment, pending or booked)",
)
def post_appointment(principal: Sas, body: Body, bus: Bus) -> FhirResponse:
    view = bus.handle(booking_command(body, principal.organisation_id))
    booked: AppointmentRow = view.appointment  # a booking always has its appointment
    headers = {"Location": f"/snp/fhir/Appointment/{booked.id}"}
    return FhirResponse(
        appointment_resource(booked, view.request),
        status_code=201 if view.created else 200,
        headers=headers,
    )


@router.get("/fhir/Appointment/{appointment_id}", tags=["appointments"])
def get_appointment(appointment_id: str, principal: TeamOrSas, uow: Uow) -> FhirResponse:
    view = views.get_appointment(uow, appointment_id, principal.organisation_id, principal.role)
    return FhirResponse(appointment_resource(view.appointment, view.request))


@router.post(
    "/fhir/Appointment/{appointment_id}/$status",
    tags=["appointments"],
    summary="Effecteur or SAS: booked, fulfilled, noshow or cancelled",
)
def post_status(appointment_id: str, principal: TeamOrSas, body: Body, bus: Bus) -> FhirResponse:
    command = ChangeAppointmentStatus(principal.organisation_id, principal.role, appointment_id, status_of(body))
    view = bus.handle(command)
    return FhirResponse(appointment_resource(view.appointment, view.request))


@router.get("/dashboard", tags=["dashboard"], summary="CPTS: aggregates of its territory over a period")
def get_dashboard(
    principal: Cpts,
    bus: Bus,
    uow: Uow,
    territory: str | None = None,
    start: Annotated[str | None, Query(alias="from")] = None,
    end: Annotated[str | None, Query(alias="to")] = None,
) -> JSONResponse:
    # The day in progress is never shown: reading it twice a moment apart would difference one request out.
    yesterday = bus.deps.clock().astimezone(PARIS).date() - timedelta(days=1)
    asked_first, asked_last = period_day(start, "from"), period_day(end, "to")
    if asked_first and asked_last and asked_first > asked_last:
        raise BadRequest("`from` must not be after `to`", expression=["from"])
    last = min(asked_last or yesterday, yesterday)
    first = asked_first or last - timedelta(days=DASHBOARD_DEFAULT_DAYS - 1)
    if first > last:
        raise Unprocessable("the dashboard covers whole days that are over: `from` must be yesterday or before",
                            expression=["from"])
    check_date_range(first, last, "period", max_days=DASHBOARD_MAX_DAYS)
    threshold = bus.deps.settings.small_cell_threshold
    board = views.territory_dashboard(uow, principal.organisation_id, territory, first, last,
                                      small_cell_threshold=threshold)
    return JSONResponse(board)


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
