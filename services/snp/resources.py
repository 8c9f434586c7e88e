"""FHIR shapes the snp service returns and notifies (validated through the pinned R4B models)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from services.snp.adapters.orm import AppointmentRow, RequestRow, ScheduleActorRow, ScheduleRow, SlotRow
from services.snp.domain import (
    INSEE_COMMUNE_SYSTEM,
    REASON_CATEGORIES,
    REASON_SYSTEM,
    SAS_REQUEST_SYSTEM,
    SLOT_TYPE_SYSTEM,
    URGENCY_DISPLAY,
    URGENCY_SYSTEM,
    Urgency,
)
from shared.fhir.models import (
    Appointment,
    Location,
    Practitioner,
    PractitionerRole,
    Schedule,
    ServiceRequest,
    Slot,
    to_json,
)
from shared.fhir.outcome import operation_outcome
from shared.identifiers import ORGANISATION

ORG_SYSTEM = ORGANISATION

# Profiles of the ANS SAS IG's aggregator searchset (PS individual and CPTS use cases).
SAS_BUNDLE_PROFILE = "http://sas.fr/fhir/StructureDefinition/BundleAgregateur"
SAS_SLOT_PROFILE = "http://sas.fr/fhir/StructureDefinition/FrSlotAgregateur"
SAS_CPTS_SLOT_PROFILE = "https://interop.esante.gouv.fr/ig/fhir/sas/StructureDefinition/sas-cpts-slot-aggregator"
SAS_SCHEDULE_PROFILE = "http://sas.fr/fhir/StructureDefinition/FrScheduleAgregateur"
ACTOR_PROFILES = {
    "Practitioner": "http://sas.fr/fhir/StructureDefinition/FrPractitionerAgregateur",
    "PractitionerRole": "http://sas.fr/fhir/StructureDefinition/FrPractitionerRoleExerciceAgregateur",
    "Location": "http://sas.fr/fhir/StructureDefinition/FrLocationAgregateur",
}
SAS_APPOINTMENT_PROFILE = "http://interopsante.org/fhir/StructureDefinition/FrAppointmentSAS"
APPOINTMENT_SYSTEM = "https://relais.example.org/fhir/NamingSystem/snp-appointment"



class EntryOutcome(Protocol):
    """What the publish handler says of one Bundle entry."""

    @property
    def status(self) -> int: ...
    @property
    def location(self) -> str | None: ...
    @property
    def diagnostics(self) -> str | None: ...


_REQUEST_STATUS = {"waiting": "active", "placed": "completed", "expired": "revoked"}


def instant(value: datetime) -> str:
    return value.isoformat()


def _org(org_id: str) -> dict[str, Any]:
    return {"type": "Organization", "identifier": {"system": ORG_SYSTEM, "value": org_id}}


def _types(row: SlotRow) -> list[str]:
    return [code for code in row.types.split(",") if code]


def slot_resource(row: SlotRow) -> dict[str, Any]:
    """A Slot in the SAS IG's aggregator shape: TRE_R314 types in meta.security, coded elements as published."""
    status = {"free": "free", "busy": "busy", "withdrawn": "busy-unavailable"}[row.status]
    types = _types(row)
    profile = SAS_CPTS_SLOT_PROFILE if "CPTS" in types else SAS_SLOT_PROFILE
    detail = json.loads(row.detail or "{}")
    return to_json(
        Slot.model_validate(
            {
                "resourceType": "Slot",
                "id": row.id,
                "meta": {
                    "profile": [profile],
                    "security": [{"system": SLOT_TYPE_SYSTEM, "code": code} for code in types],
                },
                "identifier": [{"system": ORG_SYSTEM + "/" + row.org_id + "/slot", "value": row.client_id}],
                **detail,
                "schedule": {"reference": f"Schedule/{row.schedule_id}"},
                "status": status,
                "start": instant(row.start),
                "end": instant(row.end),
            }
        )
    )


def schedule_resource(row: ScheduleRow, actors: Sequence[ScheduleActorRow]) -> dict[str, Any]:
    """A Schedule whose actors are the Practitioner, PractitionerRole and Location the effecteur published."""
    references: list[dict[str, Any]] = [{"reference": f"{a.kind}/{_actor_id(a)}"} for a in actors]
    if not references:
        # Published before actors were kept: the commune still locates it.
        references = [{"type": "Location", "identifier": {"system": INSEE_COMMUNE_SYSTEM, "value": row.commune}}]
    return to_json(
        Schedule.model_validate(
            {
                "resourceType": "Schedule",
                "id": row.id,
                "meta": {"profile": [SAS_SCHEDULE_PROFILE]},
                "actor": references,
            }
        )
    )


def _actor_id(actor: ScheduleActorRow) -> str:
    return str(json.loads(actor.resource)["id"])


def actor_resource(actor: ScheduleActorRow) -> dict[str, Any]:
    data = json.loads(actor.resource)
    data["meta"] = {"profile": [ACTOR_PROFILES[actor.kind]]}
    models: dict[str, Any] = {"Practitioner": Practitioner, "PractitionerRole": PractitionerRole, "Location": Location}
    return to_json(models[actor.kind].model_validate(data))


def searchset(
    *,
    base: str,
    total: int,
    slots: Sequence[SlotRow],
    schedules: Sequence[ScheduleRow],
    actors: Sequence[ScheduleActorRow],
    links: Sequence[tuple[str, str]],
) -> dict[str, Any]:
    """The SAS IG's searchset: each matching Slot, then its Schedule and actors once (search.mode include)."""
    entries: list[dict[str, Any]] = []
    by_schedule = {row.id: row for row in schedules}
    actors_of: dict[str, list[ScheduleActorRow]] = {}
    for actor in actors:
        actors_of.setdefault(actor.schedule_id, []).append(actor)
    seen: set[str] = set()

    def add(resource: dict[str, Any], mode: str) -> None:
        key = f"{resource['resourceType']}/{resource['id']}"
        if key in seen:
            return
        seen.add(key)
        entries.append({"fullUrl": f"{base}/{key}", "resource": resource, "search": {"mode": mode}})

    for slot in slots:
        add(slot_resource(slot), "match")
        schedule = by_schedule.get(slot.schedule_id)
        if schedule is None:
            continue
        own = actors_of.get(schedule.id, [])
        add(schedule_resource(schedule, own), "include")
        for actor in own:
            add(actor_resource(actor), "include")
    return {
        "resourceType": "Bundle",
        "meta": {"profile": [SAS_BUNDLE_PROFILE]},
        "type": "searchset",
        "total": total,
        "link": [{"relation": relation, "url": url} for relation, url in links],
        "entry": entries,
    }


def service_request_resource(row: RequestRow, *, with_patient: bool = True) -> dict[str, Any]:
    urgency = Urgency(row.urgency)
    subject = (
        {"identifier": {"system": row.patient_system, "value": row.patient_value}}
        if with_patient
        else {"display": "patient"}
    )
    return to_json(
        ServiceRequest.model_validate(
            {
                "resourceType": "ServiceRequest",
                "id": row.id,
                "identifier": [{"system": f"{SAS_REQUEST_SYSTEM}/{row.sas_org_id}", "value": row.identifier}],
                "status": _REQUEST_STATUS.get(row.state, "active"),
                "intent": "order",
                "priority": "urgent" if urgency is Urgency.WITHIN_2H else "asap",
                "category": [
                    {
                        "coding": [
                            {
                                "system": URGENCY_SYSTEM,
                                "code": urgency.value,
                                "display": URGENCY_DISPLAY[urgency],
                            }
                        ]
                    }
                ],
                "code": {"text": "Soins non programmés"},
                "subject": subject,
                "authoredOn": instant(row.requested_at),
                "occurrencePeriod": {"start": instant(row.requested_at), "end": instant(row.deadline_at)},
                "locationCode": [{"coding": [{"system": INSEE_COMMUNE_SYSTEM, "code": row.commune}]}],
                "reasonCode": [
                    {
                        "coding": [
                            {
                                "system": REASON_SYSTEM,
                                "code": row.reason,
                                "display": REASON_CATEGORIES.get(row.reason, row.reason),
                            }
                        ]
                    }
                ],
                "requester": _org(row.sas_org_id),
            }
        )
    )


def appointment_resource(row: AppointmentRow, request: RequestRow) -> dict[str, Any]:
    return to_json(
        Appointment.model_validate(
            {
                "resourceType": "Appointment",
                "id": row.id,
                "meta": {"profile": [SAS_APPOINTMENT_PROFILE]},
                "identifier": [{"system": APPOINTMENT_SYSTEM, "value": row.id}],
                "status": row.status,
                "start": instant(row.start),
                "end": instant(row.end),
                "slot": [{"reference": f"Slot/{row.slot_id}"}],
                "basedOn": [{"reference": f"ServiceRequest/{request.id}"}],
                "created": instant(row.created_at),
                "participant": [
                    {
                        "actor": {
                            "type": "Patient",
                            "identifier": {"system": request.patient_system, "value": request.patient_value},
                        },
                        "status": "accepted",
                    },
                    {
                        "actor": _org(row.org_id),
                        "status": "accepted" if row.status != "pending" else "needs-action",
                    },
                ],
            }
        )
    )


_REASONS = {
    200: "200 OK",
    201: "201 Created",
    400: "400 Bad Request",
    403: "403 Forbidden",
    409: "409 Conflict",
    422: "422 Unprocessable Entity",
}


def publish_response(results: Sequence[EntryOutcome], *, atomic: bool) -> dict[str, Any]:
    """The transaction-response or batch-response Bundle: one entry per entry sent, in order."""
    entries = []
    for result in results:
        response: dict[str, Any] = {"status": _REASONS.get(result.status, str(result.status))}
        if result.location:
            response["location"] = result.location
        if result.diagnostics:
            response["outcome"] = operation_outcome("error", "processing", result.diagnostics)
        entries.append({"response": response})
    kind = "transaction-response" if atomic else "batch-response"
    return {"resourceType": "Bundle", "type": kind, "entry": entries}
