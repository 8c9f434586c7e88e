"""FHIR shapes the snp service returns and notifies (validated through the pinned R4B models)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from services.snp.adapters.orm import AppointmentRow, RequestRow, SlotRow
from services.snp.domain import (
    INSEE_COMMUNE_SYSTEM,
    REASON_CATEGORIES,
    REASON_SYSTEM,
    SAS_REQUEST_SYSTEM,
    SNP_SLOT_TYPE_CODE,
    URGENCY_DISPLAY,
    URGENCY_SYSTEM,
    Urgency,
)
from shared.fhir.models import Appointment, ServiceRequest, Slot, to_json
from shared.fhir.outcome import operation_outcome

ORG_SYSTEM = "https://relais.example.org/fhir/NamingSystem/organisation"
SNP_SLOT_TYPE_SYSTEM = "https://relais.example.org/fhir/CodeSystem/sas-slot-type"



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


def slot_resource(row: SlotRow) -> dict[str, Any]:
    status = {"free": "free", "busy": "busy", "withdrawn": "busy-unavailable"}[row.status]
    return to_json(
        Slot.model_validate(
            {
                "resourceType": "Slot",
                "id": row.id,
                "identifier": [{"system": ORG_SYSTEM + "/" + row.org_id + "/slot", "value": row.client_id}],
                "meta": {"security": [{"system": SNP_SLOT_TYPE_SYSTEM, "code": SNP_SLOT_TYPE_CODE}]},
                "schedule": {"reference": f"Schedule/{row.schedule_id}"},
                "status": status,
                "start": instant(row.start),
                "end": instant(row.end),
            }
        )
    )


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
