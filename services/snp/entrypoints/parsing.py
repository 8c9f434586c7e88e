"""FHIR in, commands out: validation of what effecteurs and the SAS send (thin, no database)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from pydantic import ValidationError

from services.snp.commands import (
    EntryError,
    PublishAvailability,
    RequestSnp,
    ScheduleInput,
    SlotInput,
)
from services.snp.domain import (
    INSEE_COMMUNE_SYSTEM,
    PARIS,
    REASON_CATEGORIES,
    REASON_SYSTEM,
    SNP_SLOT_TYPE_CODE,
    URGENCY_SYSTEM,
    AppointmentStatus,
    Urgency,
    parse_status,
)
from services.snp.resources import ORG_SYSTEM
from shared.errors import BadRequest, Unprocessable
from shared.fhir.models import Bundle, Parameters, Schedule, ServiceRequest, Slot
from shared.fhir.outcome import outcome_from_validation_error
from shared.identifiers import validate_identifier


class InvalidResource(BadRequest):
    def __init__(self, exc: ValidationError, root: str) -> None:
        super().__init__(f"{root} is not valid FHIR R4")
        self.issues = outcome_from_validation_error(exc, root)


def _validate(model: Any, data: dict[str, Any], root: str) -> Any:
    if data.get("resourceType") != root:
        raise BadRequest(
            f"expected a {root}, got {data.get('resourceType') or 'no resourceType'}",
            expression=["resourceType"],
        )
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidResource(exc, root) from exc


def _utc(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if value.tzinfo is None:
        raise ValueError("date-time without a time zone")
    return value.astimezone(UTC)


def _codes(concepts: Any) -> list[tuple[str | None, str]]:
    found = []
    for concept in concepts or []:
        for coding in concept.coding or []:
            if coding.code:
                found.append((coding.system, coding.code))
    return found


def _commune_of(schedule: Schedule) -> str | None:
    for actor in schedule.actor or []:
        identifier = actor.identifier
        if identifier is not None and identifier.system == INSEE_COMMUNE_SYSTEM and identifier.value:
            return identifier.value.strip()
    return None


def _foreign_org(schedule: Schedule, org_id: str) -> str | None:
    for actor in schedule.actor or []:
        identifier = actor.identifier
        if identifier is not None and identifier.system == ORG_SYSTEM and identifier.value != org_id:
            return identifier.value
    return None


def _is_snp(slot: Slot) -> bool:
    security = (slot.meta.security if slot.meta else None) or []
    service_types = [code for _, code in _codes(slot.serviceType)]
    codes = [c.code for c in security if c.code] + service_types
    return any(code.strip().upper() == SNP_SLOT_TYPE_CODE for code in codes)


def publish_command(data: dict[str, Any], org_id: str) -> PublishAvailability:
    """A transaction or batch Bundle of Schedules and free SNP Slots, as a command."""
    bundle = _validate(Bundle, data, "Bundle")
    if bundle.type not in ("transaction", "batch"):
        raise Unprocessable(
            f"Bundle.type must be transaction or batch, got {bundle.type}", expression=["Bundle.type"]
        )
    schedules: list[ScheduleInput] = []
    slots: list[SlotInput] = []
    errors: list[EntryError] = []
    for index, entry in enumerate(bundle.entry or []):
        resource = entry.resource
        kind = resource.get_resource_type() if resource is not None else None
        if kind == "Schedule":
            client_id = resource.id or entry.fullUrl
            commune = _commune_of(resource)
            foreign = _foreign_org(resource, org_id)
            if foreign:
                errors.append(EntryError(index, 403, f"Schedule belongs to {foreign}; publish your own only"))
            elif not client_id:
                errors.append(EntryError(index, 400, "Schedule needs an id or a fullUrl"))
            elif not commune:
                errors.append(
                    EntryError(
                        index,
                        422,
                        "Schedule.actor must name the effecteur's commune: "
                        f"{{'type': 'Location', 'identifier': {{'system': "
                        f"'{INSEE_COMMUNE_SYSTEM}', 'value': INSEE code}}}}",
                    )
                )
            else:
                references = tuple(
                    r for r in (entry.fullUrl, f"Schedule/{resource.id}" if resource.id else None) if r
                )
                schedules.append(ScheduleInput(index, client_id, commune, references))
        elif kind == "Slot":
            client_id = resource.id or entry.fullUrl
            start, end = _utc(resource.start), _utc(resource.end)
            if not client_id:
                errors.append(EntryError(index, 400, "Slot needs an id or a fullUrl"))
            elif resource.status != "free":
                errors.append(
                    EntryError(
                        index,
                        422,
                        f"publish free slots only (status {resource.status}); "
                        "withdraw a slot with DELETE /snp/fhir/Slot/{id}",
                    )
                )
            elif not _is_snp(resource):
                errors.append(
                    EntryError(
                        index,
                        422,
                        f"not an SNP slot: add meta.security code '{SNP_SLOT_TYPE_CODE}' (SAS slot type)",
                    )
                )
            elif not start or not end or end <= start:
                errors.append(EntryError(index, 422, "Slot.end must be after Slot.start"))
            else:
                slots.append(SlotInput(index, client_id, resource.schedule.reference or "", start, end))
        else:
            errors.append(EntryError(index, 422, f"only Schedule and Slot entries are accepted, got {kind}"))
    return PublishAvailability(
        org_id,
        bundle.type == "transaction",
        tuple(schedules),
        tuple(slots),
        tuple(errors),
        len(bundle.entry or []),
    )


def request_command(data: dict[str, Any], sas_org_id: str) -> RequestSnp:
    """A ServiceRequest from the SAS. Free text (note, text, reason text) is never read, so never kept."""
    request = _validate(ServiceRequest, data, "ServiceRequest")
    subject = request.subject.identifier if request.subject else None
    if subject is None or not subject.value:
        raise Unprocessable(
            "ServiceRequest.subject.identifier (INS-NIR or a local identifier) is required",
            expression=["ServiceRequest.subject.identifier"],
        )
    system = subject.system or "urn:relais:local"
    value = validate_identifier(system, subject.value)
    urgencies = [code for sys, code in _codes(request.category) if sys == URGENCY_SYSTEM]
    if not urgencies or urgencies[0] not in {u.value for u in Urgency}:
        raise Unprocessable(
            f"ServiceRequest.category needs a code of {URGENCY_SYSTEM}: "
            + ", ".join(u.value for u in Urgency),
            expression=["ServiceRequest.category"],
        )
    reasons = [code for sys, code in _codes(request.reasonCode) if sys == REASON_SYSTEM]
    if not reasons or reasons[0] not in REASON_CATEGORIES:
        raise Unprocessable(
            f"ServiceRequest.reasonCode needs a code of {REASON_SYSTEM}: " + ", ".join(REASON_CATEGORIES),
            expression=["ServiceRequest.reasonCode"],
        )
    communes = [code for sys, code in _codes(request.locationCode) if sys in (INSEE_COMMUNE_SYSTEM, None)]
    if not communes:
        raise Unprocessable(
            f"ServiceRequest.locationCode needs the patient's commune (system "
            f"{INSEE_COMMUNE_SYSTEM}, INSEE code)",
            expression=["ServiceRequest.locationCode"],
        )
    identifier = next((i.value for i in request.identifier or [] if i.value), None)
    return RequestSnp(
        sas_org_id, identifier, system, value, communes[0].strip(), Urgency(urgencies[0]), reasons[0]
    )


def status_of(data: dict[str, Any]) -> AppointmentStatus:
    """`Parameters` with a `status` code (or `{"status": ...}`): booked, fulfilled, noshow, cancelled..."""
    raw: str | None = None
    if data.get("resourceType") == "Parameters":
        parameters = _validate(Parameters, data, "Parameters")
        raw = next(
            (p.valueCode or p.valueString for p in parameters.parameter or [] if p.name == "status"), None
        )
    else:
        raw = data.get("status")
    if not raw:
        raise BadRequest(
            "send Parameters with parameter 'status' (valueCode)", expression=["Parameters.parameter"]
        )
    try:
        return parse_status(raw)
    except ValueError:
        raise Unprocessable(
            f"unknown appointment status {raw!r}; use " + ", ".join(s.value for s in AppointmentStatus)
        ) from None


def period_bound(value: str | None, default: datetime, *, end: bool = False) -> datetime:
    """A dashboard period bound: a date (the whole local day) or a date-time (Paris when no offset)."""
    if not value:
        return default
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            # A date means the whole local day; `to=2026-11-22` includes the 22nd.
            return datetime.combine(day + timedelta(days=1) if end else day, time(), tzinfo=PARIS)
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(f"{value!r} is not an ISO date or date-time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=PARIS)
