"""HTTP routes of the discharge service: thin — authenticate, parse, build a command, hand it to the bus."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, cast
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request

from services.discharge import views
from services.discharge.commands import (
    AcceptHandoff,
    AssignOrientation,
    CancelHandoff,
    CompleteFollowup,
    DeclineHandoff,
)
from services.discharge.entrypoints.hl7 import discharge_fhir_door
from services.discharge.intake import discharge_command
from services.discharge.messagebus import MessageBus
from shared.api.body import RawBody
from shared.api.responses import FhirResponse
from shared.auth import Principal, audit_refusal, current_principal, require_role
from shared.doors import Caller as DoorCaller
from shared.errors import BadRequest
from shared.events import Role
from shared.fhir.intake import check_content_type, parse_json, parse_message_bundle
from shared.fhir.nde import NDE_ADMISSION_ENDPOINT, declaration_command, declaration_paths, declared
from shared.routing import DISCHARGE_EVENTS
from shared.search import DateRange, SearchSpec
from shared.validation import check_datetime


def _bus(request: Request) -> MessageBus:
    return cast(MessageBus, request.app.state.messagebus)


def _parameters(request: Request, body: RawBody) -> dict[str, Any]:
    """Operation inputs from a FHIR Parameters body (or a plain JSON object); an empty body is no input."""
    if not body.strip():
        return {}
    check_content_type(request.headers.get("content-type"))
    data = parse_json(body)
    if data.get("resourceType") != "Parameters":
        return {k: v for k, v in data.items() if k != "resourceType"}
    values: dict[str, Any] = {}
    parameters = data.get("parameter") or []
    if not isinstance(parameters, list):
        raise BadRequest("Parameters.parameter must be a list", expression=["Parameters.parameter"])
    for parameter in parameters:
        if not isinstance(parameter, dict) or not isinstance(parameter.get("name"), str):
            raise BadRequest("each Parameters.parameter needs a name", expression=["Parameters.parameter"])
        value = next((v for k, v in parameter.items() if k.startswith("value")), None)
        values[str(parameter["name"])] = value
    return values


Bus = Annotated[MessageBus, Depends(_bus)]
Caller = Annotated[Principal, Depends(current_principal)]
Hospital = Annotated[Principal, Depends(require_role(Role.HOSPITAL))]
Team = Annotated[Principal, Depends(require_role(Role.TEAM))]
Cpts = Annotated[Principal, Depends(require_role(Role.CPTS))]
Params = Annotated[dict[str, Any], Depends(_parameters)]


def _completed_at(value: Any) -> datetime | None:
    """When a follow-up was done: an aware dateTime within the kernel's window (the domain refuses the future)."""
    if value is None:
        return None
    return check_datetime(value if isinstance(value, str) else str(value), "Parameters.completedAt")


router = APIRouter(prefix="/discharge/fhir", tags=["discharge"])

TASK_SEARCH = SearchSpec(
    tokens=frozenset({"status", "code"}),
    dates=frozenset({"_lastUpdated"}),
    default_count=views.DEFAULT_COUNT,
    max_count=views.MAX_COUNT,
)
_TASK_STATUSES = frozenset(
    {"requested", "accepted", "rejected", "cancelled", "failed", "in-progress", "completed", "received", "ready"}
)


def task_query(params: list[tuple[str, str]]) -> views.TaskQuery:
    """Parse the search parameters with the kernel's parser; an unknown one is a 400, never silently ignored."""
    search = TASK_SEARCH.parse(params)
    statuses = frozenset(search.tokens.get("status", ()))
    if not statuses <= _TASK_STATUSES:
        raise BadRequest("status is not a Task status", expression=["status"])
    codes: list[tuple[str | None, str]] = []
    for token in search.tokens.get("code", ()):
        system, bar, code = token.rpartition("|")
        codes.append((system if bar and system else None, code))
    updated = search.dates.get("_lastUpdated", DateRange())
    return views.TaskQuery(statuses, tuple(codes), updated.start, updated.end, search.count, search.offset)


@router.get(
    "/Task",
    summary="Search the caller's Tasks (owner or requester): status, code, _lastUpdated, _count, paging",
    response_class=FhirResponse,
)
def search_tasks(request: Request, principal: Caller, bus: Bus) -> FhirResponse:
    params = list(request.query_params.multi_items())
    query = task_query(params)
    tasks, more = views.search_tasks(bus.unit_of_work(), principal.organisation_id, query)
    base = str(request.url).split("?", 1)[0]
    kept = [(k, v) for k, v in params if k != "_offset"]
    next_url = f"{base}?{urlencode([*kept, ('_offset', str(query.offset + query.count))])}" if more else None
    return FhirResponse(views.searchset(tasks, base.rsplit("/Task", 1)[0], str(request.url), next_url))


@router.post(
    "/$process-message",
    summary="Hospital discharge message (SOR, notification-discharge, revise-/cancel-discharge)",
    response_class=FhirResponse,
)
def process_message(request: Request, principal: Hospital, bus: Bus, body: RawBody) -> FhirResponse:
    # A plain `def`: parsing a large Bundle runs in the threadpool, never on the event loop.
    door = discharge_fhir_door(bus, request.headers.get("content-type"), parse=parse_message_bundle)
    return FhirResponse(door(body, DoorCaller(principal.organisation_id, principal.role, "fhir", request.url.path)))


nde_router = APIRouter(prefix="/discharge/nde/fhir", tags=["NdE"])


@nde_router.post(
    "/CommunicationRequest",
    summary="NdE event declaration (profile nde-eventdeclaration): SOR here; ADM goes to admissions",
    status_code=201,
    response_class=FhirResponse,
)
def declare_event(request: Request, principal: Hospital, bus: Bus, body: RawBody) -> FhirResponse:
    declaration, command = declaration_command(
        body,
        request.headers.get("content-type"),
        bus.deps.settings.max_body_bytes,
        accepted=DISCHARGE_EVENTS,
        other_door=NDE_ADMISSION_ENDPOINT,
        build=lambda message: discharge_command(message, principal.organisation_id, bus.deps.settings.max_followups),
        refused=lambda: audit_refusal(request, principal, "another hospital's declaration"),
    )
    with declaration_paths():
        bus.handle(command)
    return FhirResponse(**declared(declaration))


@router.get(
    "/Task/{task_id}",
    summary="A handoff or follow-up Task (its hospital and its team only)",
    response_class=FhirResponse,
)
def read_task(task_id: str, principal: Caller, bus: Bus) -> FhirResponse:
    return FhirResponse(views.read_task(bus.unit_of_work(), task_id, principal.organisation_id, principal.role))


@router.post("/Task/{task_id}/$accept", summary="The team accepts the handoff", response_class=FhirResponse)
def accept(task_id: str, principal: Team, bus: Bus) -> FhirResponse:
    return FhirResponse(bus.handle(AcceptHandoff(task_id, principal.organisation_id)))


@router.post(
    "/Task/{task_id}/$decline", summary="The team declines the handoff, with a reason", response_class=FhirResponse
)
def decline(task_id: str, principal: Team, params: Params, bus: Bus) -> FhirResponse:
    command = DeclineHandoff(task_id, principal.organisation_id, str(params.get("reason") or ""))
    return FhirResponse(bus.handle(command))


@router.post("/Task/{task_id}/$cancel", summary="The hospital cancels its handoff", response_class=FhirResponse)
def cancel(task_id: str, principal: Hospital, params: Params, bus: Bus) -> FhirResponse:
    reason = params.get("reason")
    command = CancelHandoff(task_id, principal.organisation_id, str(reason) if reason else None)
    return FhirResponse(bus.handle(command))


@router.post(
    "/Task/{task_id}/$complete", summary="The team records a follow-up item as done", response_class=FhirResponse
)
def complete(task_id: str, principal: Team, params: Params, bus: Bus) -> FhirResponse:
    done_at = _completed_at(params.get("completedAt"))
    command = CompleteFollowup(task_id, principal.organisation_id, done_at)
    return FhirResponse(bus.handle(command))


@router.post(
    "/Task/{task_id}/$assign",
    summary="The CPTS proposes a treating team for a patient it orients (Parameters: team)",
    response_class=FhirResponse,
)
def assign(task_id: str, principal: Cpts, params: Params, bus: Bus) -> FhirResponse:
    team = params.get("team")
    if isinstance(team, dict):  # valueIdentifier: the organisation id is its value
        team = team.get("value")
    command = AssignOrientation(task_id, principal.organisation_id, team)
    return FhirResponse(bus.handle(command))
