"""HTTP routes of the discharge service: thin — authenticate, parse, build a command, hand it over."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool

from services.discharge import domain, handlers
from services.discharge.domain import (
    AcceptHandoff,
    CancelHandoff,
    CompleteFollowup,
    DeclineHandoff,
    Policy,
)
from services.discharge.intake import discharge_facts
from services.discharge.uow import DischargeUnitOfWork
from shared.api.responses import FhirResponse
from shared.auth import Principal, current_principal, require_role
from shared.errors import BadRequest
from shared.events import Role
from shared.fhir.intake import check_content_type, parse_json, parse_message_bundle
from shared.fhir.models import to_json
from shared.identifiers import patient_key


@dataclass(frozen=True)
class ApiDeps:
    unit_of_work: Callable[[], DischargeUnitOfWork]
    clock: handlers.Clock
    policy: Policy
    secret_key: str
    max_body_bytes: int


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


def build_router(deps: ApiDeps) -> APIRouter:
    router = APIRouter(prefix="/discharge/fhir", tags=["discharge"])

    @router.post(
        "/$process-message",
        summary="Hospital discharge message (SOR, notification-discharge, revise-/cancel-discharge)",
        response_class=FhirResponse,
    )
    async def process_message(
        request: Request, principal: Principal = Depends(require_role(Role.HOSPITAL))
    ) -> FhirResponse:
        body = await request.body()
        msg = parse_message_bundle(body, request.headers.get("content-type"), deps.max_body_bytes)
        command = domain.command_for(msg.event_type)
        facts = discharge_facts(msg, msg.event_type)
        cmd = command(
            message_id=msg.message_id,
            fingerprint=domain.fingerprint(msg.raw),
            event_type=msg.event_type,
            caller_org_id=principal.organisation_id,
            facts=facts,
            request_header=to_json(msg.header),
        )
        key = patient_key(facts.patient.system, facts.patient.value, deps.secret_key)
        response = await run_in_threadpool(
            handlers.process_discharge_message,
            deps.unit_of_work(),
            cmd,
            patient_key=key,
            clock=deps.clock,
            policy=deps.policy,
        )
        return FhirResponse(response)

    @router.get(
        "/Task/{task_id}",
        summary="A handoff or follow-up Task (its hospital and its team only)",
        response_class=FhirResponse,
    )
    def read_task(task_id: str, principal: Principal = Depends(current_principal)) -> FhirResponse:
        return FhirResponse(handlers.read_task(deps.unit_of_work(), task_id, principal.organisation_id))

    @router.post(
        "/Task/{task_id}/$accept", summary="The team accepts the handoff", response_class=FhirResponse
    )
    def accept(task_id: str, principal: Principal = Depends(require_role(Role.TEAM))) -> FhirResponse:
        cmd = AcceptHandoff(task_id, principal.organisation_id)
        return FhirResponse(
            handlers.accept_handoff(deps.unit_of_work(), cmd, clock=deps.clock, policy=deps.policy)
        )

    @router.post(
        "/Task/{task_id}/$decline",
        summary="The team declines the handoff, with a reason",
        response_class=FhirResponse,
    )
    async def decline(
        task_id: str, request: Request, principal: Principal = Depends(require_role(Role.TEAM))
    ) -> FhirResponse:
        params = await _parameters(request)
        cmd = DeclineHandoff(task_id, principal.organisation_id, str(params.get("reason") or ""))
        task = await run_in_threadpool(
            handlers.decline_handoff, deps.unit_of_work(), cmd, clock=deps.clock, policy=deps.policy
        )
        return FhirResponse(task)

    @router.post(
        "/Task/{task_id}/$cancel", summary="The hospital cancels its handoff", response_class=FhirResponse
    )
    async def cancel(
        task_id: str, request: Request, principal: Principal = Depends(require_role(Role.HOSPITAL))
    ) -> FhirResponse:
        params = await _parameters(request)
        reason = params.get("reason")
        cmd = CancelHandoff(task_id, principal.organisation_id, str(reason) if reason else None)
        task = await run_in_threadpool(
            handlers.cancel_handoff, deps.unit_of_work(), cmd, clock=deps.clock, policy=deps.policy
        )
        return FhirResponse(task)

    @router.post(
        "/Task/{task_id}/$complete",
        summary="The team records a follow-up item as done",
        response_class=FhirResponse,
    )
    async def complete(
        task_id: str, request: Request, principal: Principal = Depends(require_role(Role.TEAM))
    ) -> FhirResponse:
        params = await _parameters(request)
        cmd = CompleteFollowup(
            task_id, principal.organisation_id, _datetime(params.get("completedAt"), "completedAt")
        )
        task = await run_in_threadpool(handlers.complete_followup, deps.unit_of_work(), cmd, clock=deps.clock)
        return FhirResponse(task)

    return router
