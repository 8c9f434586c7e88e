"""FHIR in, commands out: validation of what effecteurs and the SAS send (thin, no database)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from pydantic import ValidationError

from services.snp.commands import (
    ActorInput,
    EntryError,
    PublishAvailability,
    RequestSnp,
    ScheduleInput,
    SlotInput,
)
from services.snp.domain import (
    INSEE_COMMUNE_SYSTEM,
    REASON_CATEGORIES,
    REASON_SYSTEM,
    SLOT_TYPE_SYSTEM,
    SLOT_TYPES,
    URGENCY_SYSTEM,
    AppointmentStatus,
    Urgency,
    parse_status,
)
from services.snp.resources import ORG_SYSTEM
from shared.communes import communes_for_postal_code
from shared.errors import BadRequest, Unprocessable
from shared.fhir.models import Bundle, Parameters, Schedule, ServiceRequest, Slot
from shared.fhir.outcome import outcome_from_validation_error
from shared.identifiers import validate_identifier
from shared.validation import check_date, check_text

ACTOR_KINDS = ("Practitioner", "PractitionerRole", "Location")


class InvalidResource(BadRequest):
    def __init__(self, exc: ValidationError, root: str) -> None:
        super().__init__(f"{root} is not valid FHIR R4")
        self.issues = outcome_from_validation_error(exc, root)


def validated(model: Any, data: dict[str, Any], root: str) -> Any:
    if data.get("resourceType") != root:
        raise BadRequest(
            f"expected a {root}, got {data.get('resourceType') or 'no resourceType'}",
            expression=["resourceType"],
        )
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidResource(exc, root) from exc


def utc_instant(value: Any) -> datetime | None:
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


def slot_types(slot: Slot) -> tuple[str, ...]:
    """TRE_R314 slot types of a Slot (meta.security; serviceType still read for early Relais publishers)."""
    security = (slot.meta.security if slot.meta else None) or []
    codes = [c.code for c in security if c.code] + [code for _, code in _codes(slot.serviceType)]
    found = {code.strip().upper() for code in codes} & set(SLOT_TYPES)
    return tuple(t for t in SLOT_TYPES if t in found)


def _identifier_key(resource: Any) -> str | None:
    for identifier in getattr(resource, "identifier", None) or []:
        if identifier.system and identifier.value:
            return f"{identifier.system}|{identifier.value.strip()}"
    return None


def _served(resource: Any) -> dict[str, Any]:
    """What Relais serves back of an actor: the resource as published, without its narrative."""
    data = resource.model_dump(mode="json", exclude_none=True)
    data.pop("text", None)
    return data


def _postal_of(resource: Any, bundled: dict[str, Any]) -> str | None:
    """The postal code of a Location, or of the (contained or bundled) Location of a PractitionerRole."""
    kind = resource.get_resource_type()
    if kind == "Location":
        address = resource.address
        return address.postalCode.strip() if address is not None and address.postalCode else None
    if kind == "PractitionerRole":
        contained = {f"#{c.id}": c for c in resource.contained or [] if c.id}
        for location in resource.location or []:
            target = contained.get(location.reference or "") or bundled.get(location.reference or "")
            if target is not None and target.get_resource_type() == "Location":
                found = _postal_of(target, bundled)
                if found:
                    return found
    return None


def _actors(schedule: Schedule, bundled: dict[str, Any]) -> tuple[list[ActorInput], str | None]:
    """The Schedule's actors (bundled resources or logical references) and the postal code they give."""
    actors: list[ActorInput] = []
    postal: str | None = None
    for actor in schedule.actor or []:
        target = bundled.get(actor.reference or "")
        if target is not None:
            kind = target.get_resource_type()
            client_id = str(target.id or actor.reference)
            actors.append(ActorInput(kind, client_id, _identifier_key(target), _served(target)))
            postal = postal or _postal_of(target, bundled)
        elif actor.identifier is not None and actor.type in ACTOR_KINDS and actor.identifier.value:
            key = f"{actor.identifier.system}|{actor.identifier.value.strip()}"
            served = {"resourceType": actor.type, "identifier": [actor.identifier.model_dump(exclude_none=True)]}
            actors.append(ActorInput(actor.type, key, key, served))
    return actors, postal


def _commune_for(postal_code: str, city: str | None) -> str | None:
    found = communes_for_postal_code(postal_code)
    named = [c for c in found if city and c.name.casefold() == city.strip().casefold()]
    return (named or found)[0].insee if found else None


def _schedule_input(
    index: int, entry: Any, org_id: str, bundled: dict[str, Any]
) -> ScheduleInput | EntryError:
    resource = entry.resource
    client_id = resource.id or entry.fullUrl
    foreign = _foreign_org(resource, org_id)
    if foreign:
        return EntryError(index, 403, f"Schedule belongs to {foreign}; publish your own only")
    if not client_id:
        return EntryError(index, 400, "Schedule needs an id or a fullUrl")
    actors, postal = _actors(resource, bundled)
    commune = _commune_of(resource)
    if commune is None and postal:
        commune = _commune_for(postal, None)
    if not commune:
        return EntryError(
            index,
            422,
            "Schedule.actor must locate the effecteur: a Location (or a PractitionerRole's Location) with "
            "address.postalCode, or {'type': 'Location', 'identifier': {'system': "
            f"'{INSEE_COMMUNE_SYSTEM}', 'value': INSEE code}}}}",
        )
    references = tuple(r for r in (entry.fullUrl, f"Schedule/{resource.id}" if resource.id else None) if r)
    return ScheduleInput(index, client_id, commune, references, postal, tuple(actors))


def _slot_detail(slot: Slot) -> dict[str, Any]:
    """The coded elements the SAS reads (service type, specialty, appointment type); free text dropped."""
    detail: dict[str, Any] = {}
    for name in ("serviceType", "specialty"):
        concepts = [
            {"coding": [c.model_dump(mode="json", exclude_none=True) for c in concept.coding or []]}
            for concept in getattr(slot, name) or []
            if concept.coding
        ]
        if concepts:
            detail[name] = concepts
    if slot.appointmentType is not None and slot.appointmentType.coding:
        detail["appointmentType"] = {
            "coding": [c.model_dump(mode="json", exclude_none=True) for c in slot.appointmentType.coding]
        }
    return detail


def _slot_input(index: int, entry: Any) -> SlotInput | EntryError:
    resource = entry.resource
    client_id = resource.id or entry.fullUrl
    start, end = utc_instant(resource.start), utc_instant(resource.end)
    types = slot_types(resource)
    if not client_id:
        return EntryError(index, 400, "Slot needs an id or a fullUrl")
    if resource.status != "free":
        return EntryError(
            index,
            422,
            f"publish free slots only (status {resource.status}); withdraw a slot with DELETE /snp/fhir/Slot/{{id}}",
        )
    if not types:
        return EntryError(
            index,
            422,
            f"Slot.meta.security needs a slot type of {SLOT_TYPE_SYSTEM}: " + ", ".join(SLOT_TYPES),
        )
    if not start or not end or end <= start:
        return EntryError(index, 422, "Slot.end must be after Slot.start")
    return SlotInput(
        index,
        client_id,
        resource.schedule.reference or "",
        start,
        end,
        types,
        tuple(code for _, code in _codes(resource.serviceType)),
        tuple(code for _, code in _codes(resource.specialty)),
        _slot_detail(resource),
    )


def publish_command(data: dict[str, Any], org_id: str) -> PublishAvailability:
    """A transaction or batch Bundle of Schedules, their actors and free Slots (TRE_R314 types), as a command."""
    bundle = validated(Bundle, data, "Bundle")
    if bundle.type not in ("transaction", "batch"):
        raise Unprocessable(
            f"Bundle.type must be transaction or batch, got {bundle.type}", expression=["Bundle.type"]
        )
    entries = bundle.entry or []
    bundled: dict[str, Any] = {}
    for entry in entries:
        resource = entry.resource
        if resource is not None and resource.get_resource_type() in ACTOR_KINDS:
            if entry.fullUrl:
                bundled[entry.fullUrl] = resource
            if resource.id:
                bundled[f"{resource.get_resource_type()}/{resource.id}"] = resource
    schedules: list[ScheduleInput] = []
    slots: list[SlotInput] = []
    errors: list[EntryError] = []
    actor_entries: list[int] = []
    for index, entry in enumerate(entries):
        resource = entry.resource
        kind = resource.get_resource_type() if resource is not None else None
        result: ScheduleInput | SlotInput | EntryError | None
        if kind == "Schedule":
            result = _schedule_input(index, entry, org_id, bundled)
        elif kind == "Slot":
            result = _slot_input(index, entry)
        elif kind in ACTOR_KINDS:
            result = None  # stored with the Schedule that names it
            actor_entries.append(index)
        else:
            result = EntryError(
                index, 422, f"accepted entries: Schedule, Slot, {', '.join(ACTOR_KINDS)}; got {kind}"
            )
        if isinstance(result, EntryError):
            errors.append(result)
        elif isinstance(result, ScheduleInput):
            schedules.append(result)
        elif isinstance(result, SlotInput):
            slots.append(result)
    return PublishAvailability(
        org_id,
        bundle.type == "transaction",
        tuple(schedules),
        tuple(slots),
        tuple(errors),
        len(entries),
        tuple(actor_entries),
    )


def request_command(data: dict[str, Any], sas_org_id: str) -> RequestSnp:
    """A ServiceRequest from the SAS. Free text (note, text, reason text) is never read, so never kept."""
    request = validated(ServiceRequest, data, "ServiceRequest")
    identifier = next((i.value for i in request.identifier or [] if i.value), None)
    # The request's identifier column holds 100 characters: longer is refused, not cut (PostgreSQL would fail).
    check_text(identifier, "ServiceRequest.identifier", 100)
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
    return RequestSnp(
        sas_org_id, identifier, system, value, communes[0].strip(), Urgency(urgencies[0]), reasons[0]
    )


def status_of(data: dict[str, Any]) -> AppointmentStatus:
    """`Parameters` with a `status` code (or `{"status": ...}`): booked, fulfilled, noshow, cancelled..."""
    raw: str | None = None
    if data.get("resourceType") == "Parameters":
        parameters = validated(Parameters, data, "Parameters")
        raw = next(
            (p.valueCode or p.valueString for p in parameters.parameter or [] if p.name == "status"), None
        )
    else:
        raw = data.get("status")
    # A list, a number or a huge string is a 422 here, not a crash further on.
    raw = check_text(raw, "Parameters.parameter[status]", 40)
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


def period_day(value: str | None, field: str) -> date | None:
    """A dashboard period bound: a whole Paris day `YYYY-MM-DD` within the kernel's window (no times of day:
    a window of seconds would single a request out)."""
    if not value:
        return None
    check_text(value, field, 40)
    if len(value) != 10:
        raise BadRequest(f"{field} is a whole day, YYYY-MM-DD (the dashboard counts whole days)", expression=[field])
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise BadRequest(f"{field} is not an ISO date", expression=[field]) from None
    return check_date(day, field)
