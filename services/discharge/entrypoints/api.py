"""HTTP routes of the discharge service: thin — authenticate, parse, build a command, hand it to the bus."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, cast

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool

from services.discharge import views
from services.discharge.commands import AcceptHandoff, CancelHandoff, CompleteFollowup, DeclineHandoff
from services.discharge.intake import discharge_command
from services.discharge.messagebus import MessageBus
from shared.api.responses import FhirResponse
from shared.auth import Principal, audit_refusal, current_principal, require_role
from shared.errors import BadRequest, Forbidden, Unprocessable
from shared.events import Role
from shared.fhir.intake import check_content_type, parse_json, parse_message_bundle
from shared.fhir.nde import NDE_ADMISSION_ENDPOINT, NDE_ENDPOINT, declaration_message, declaration_paths, declared
from shared.routing import DISCHARGE_EVENTS


def _bus(request: Request) -> MessageBus:
    return cast(MessageBus, request.app.state.messagebus)


async def _parameters(request: Request) -> dict[str, Any]:
    """Operation inputs from a FHIR Parameters body (or a plain JSON object); an empty body is no input."""
    body = await request.body()
    if not body.strip():
        return {}
    check_content_type(request.headers.get("content-type"))
    data = parse_json(body)
    if data.get("resourceType") != "Parameters":
        return {k: v for k, v in data.items() if k != "resourceType"}
    values: dict[str, Any] = {}
    for parameter in data.get("parameter") or []:
        if not isinstance(parameter, dict) or "name" not in parameter:
            raise BadRequest("each Parameters.parameter needs a name", expression=["Parameters.parameter"])
        value = next((v for k, v in parameter.items() if k.startswith("value")), None)
        values[str(parameter["name"])] = value
    return values


Bus = Annotated[MessageBus, Depends(_bus)]
Caller = Annotated[Principal, Depends(current_principal)]
Hospital = Annotated[Principal, Depends(require_role(Role.HOSPITAL))]
Team = Annotated[Principal, Depends(require_role(Role.TEAM))]
Params = Annotated[dict[str, Any], Depends(_parameters)]


def _datetime(value: Any, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError as exc:
        raise BadRequest(f"{name} is not a dateTime", expression=[f"Parameters.{name}"]) from exc
    if moment.tzinfo is None:
        raise BadRequest(f"{name} needs a time zone", expression=[f"Parameters.{name}"])
    return moment


router = APIRouter(prefix="/discharge/fhir", tags=["discharge"])


@router.post(
    "/$process-message",
    summary="Hospital discharge message (SOR, notification-discharge, revise-/cancel-discharge)",
    response_class=FhirResponse,
)
async def process_message(request: Request, principal: Hospital, bus: Bus) -> FhirResponse:
    body = await request.body()
    msg = parse_message_bundle(body, request.headers.get("content-type"), bus.deps.settings.max_body_bytes)
    try:
        command = discharge_command(msg, principal.organisation_id)
    except Forbidden:
        await run_in_threadpool(audit_refusal, request, principal, "another hospital's message")
        raise
    return FhirResponse(await run_in_threadpool(bus.handle, command))


nde_router = APIRouter(prefix="/discharge/nde/fhir", tags=["NdE"])


@nde_router.post(
    "/CommunicationRequest",
    summary="NdE event declaration (profile nde-eventdeclaration): SOR here; ADM goes to admissions",
    status_code=201,
    response_class=FhirResponse,
)
async def declare_event(request: Request, principal: Hospital, bus: Bus) -> FhirResponse:
    body = await request.body()
    declaration = declaration_message(body, request.headers.get("content-type"), bus.deps.settings.max_body_bytes)
    if declaration.event_type not in DISCHARGE_EVENTS:
        raise Unprocessable(
            f"a {declaration.code} declaration is an admission: send it to {NDE_ADMISSION_ENDPOINT} "
            f"(or {NDE_ENDPOINT} in the combined mode)",
            issue_code="not-supported",
            expression=["CommunicationRequest.extension('EventType')"],
        )
    try:
        with declaration_paths():
            command = discharge_command(declaration.message, principal.organisation_id)
    except Forbidden:
        await run_in_threadpool(audit_refusal, request, principal, "another hospital's declaration")
        raise
    with declaration_paths():
        await run_in_threadpool(bus.handle, command)
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
async def decline(task_id: str, principal: Team, params: Params, bus: Bus) -> FhirResponse:
    command = DeclineHandoff(task_id, principal.organisation_id, str(params.get("reason") or ""))
    return FhirResponse(await run_in_threadpool(bus.handle, command))


@router.post("/Task/{task_id}/$cancel", summary="The hospital cancels its handoff", response_class=FhirResponse)
async def cancel(task_id: str, principal: Hospital, params: Params, bus: Bus) -> FhirResponse:
    reason = params.get("reason")
    command = CancelHandoff(task_id, principal.organisation_id, str(reason) if reason else None)
    return FhirResponse(await run_in_threadpool(bus.handle, command))


@router.post(
    "/Task/{task_id}/$complete", summary="The team records a follow-up item as done", response_class=FhirResponse
)
async def complete(task_id: str, principal: Team, params: Params, bus: Bus) -> FhirResponse:
    done_at = _datetime(params.get("completedAt"), "completedAt")
    command = CompleteFollowup(task_id, principal.organisation_id, done_at)
    return FhirResponse(await run_in_threadpool(bus.handle, command))
