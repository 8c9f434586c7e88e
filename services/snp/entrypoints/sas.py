"""The SAS platform's door (ANS SAS IG): its Slot search query and its Appointment booking, read into commands."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from services.snp.commands import (
    BookSlot,
)
from services.snp.domain import (
    PARIS,
    SLOT_TYPE_SYSTEM,
    SLOT_TYPES,
    AppointmentStatus,
    SlotSearch,
    parse_status,
)
from services.snp.entrypoints.parsing import utc_instant, validated
from shared.errors import BadRequest, Unprocessable
from shared.fhir.models import Appointment
from shared.validation import check_date

# --- the SAS platform's Slot search (ANS SAS IG, aggregator search) -------------------------------------------

MAX_COUNT = 1000  # the SAS platform asks for _count=1000; more is served as pages of this size
DEFAULT_COUNT = 100
MAX_OFFSET = 100_000
MAX_WINDOW = timedelta(days=92)
MAX_IDENTIFIERS = 25  # the IG's cardinality for schedule.actor:Practitioner.identifier
INCLUDES = {"Slot:schedule", "Slot:service-type-reference"}
ITERATES = {"Schedule:actor", "Schedule:actor:Practitioner", "Schedule:actor:PractitionerRole",
            "Schedule:actor:Location"}
_SLOT_STATUS = {"free": "free"}


@dataclass(frozen=True)
class SlotQuery:
    criteria: SlotSearch
    offset: int
    count: int
    include_schedule: bool
    include_actors: bool
    canonical: tuple[tuple[str, str], ...]  # the parameters understood, for the self and next links


def _instant(raw: str, *, upper: bool) -> datetime:
    # The IG's example queries leave the offset's '+' unencoded, which a query string reads as a space.
    raw = re.sub(r" (\d{2}:?\d{2})$", r"+\1", raw)
    try:
        if len(raw) == 10:
            # Within 1870-2200: the day after 9999-12-31 would overflow.
            day = check_date(date.fromisoformat(raw), "start")
            return datetime.combine(day + timedelta(days=1) if upper else day, time(), tzinfo=PARIS)
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(f"start: {raw[:40]!r} is not an ISO date or date-time", expression=["start"]) from None
    check_date(moment.date(), "start")
    # The IG's own example sends local times without an offset: France's.
    return moment if moment.tzinfo else moment.replace(tzinfo=PARIS)


def _tokens(name: str, raw: str) -> tuple[str, ...]:
    values = tuple(v.strip() for v in raw.split(",") if v.strip())
    if not values:
        raise BadRequest(f"{name}: empty value", expression=[name])
    return values


def _codes_only(name: str, raw: str) -> tuple[str, ...]:
    return tuple(v.rsplit("|", 1)[-1] for v in _tokens(name, raw))


def _integer(name: str, raw: str, ceiling: int) -> int:
    if not raw.isdigit():
        raise BadRequest(f"{name} must be a non-negative integer", expression=[name])
    # Thousands of digits would make int() itself refuse (a 500): anything that long is past the ceiling.
    return ceiling if len(raw) > 18 else min(int(raw), ceiling)


def slot_search(params: list[tuple[str, str]]) -> SlotQuery:
    """The query string of `GET /snp/fhir/Slot`; an unknown parameter is refused (strict handling)."""
    start_ge: datetime | None = None
    start_le: datetime | None = None
    status: tuple[str, ...] = ("free",)
    found: dict[str, tuple[str, ...]] = {}
    includes: set[str] = set()
    iterates: set[str] = set()
    count, offset = DEFAULT_COUNT, 0
    canonical: list[tuple[str, str]] = []
    for name, raw in params:
        raw = raw.strip()
        if name == "start":
            prefix, value = raw[:2], raw[2:]
            if prefix in ("ge", "gt"):
                start_ge = max(filter(None, (start_ge, _instant(value, upper=False))))
            elif prefix in ("le", "lt"):
                start_le = min(filter(None, (start_le, _instant(value, upper=True))))
            else:
                raise BadRequest("start needs the prefix ge or le (start=ge...&start=le...)", expression=["start"])
        elif name == "status":
            asked = _tokens(name, raw)
            if any(value not in _SLOT_STATUS for value in asked):
                raise BadRequest("status: the SAS search serves free slots only (status=free)", expression=[name])
            status = tuple(_SLOT_STATUS[value] for value in asked)
        elif name in ("schedule.actor:Practitioner.identifier", "schedule.actor:PractitionerRole.identifier"):
            values = _tokens(name, raw)
            if len(values) > MAX_IDENTIFIERS or any("|" not in v for v in values):
                raise BadRequest(
                    f"{name}: 1 to {MAX_IDENTIFIERS} identifiers, each system|value", expression=[name]
                )
            found[name] = found.get(name, ()) + values
        elif name == "schedule.actor:Location.address-postalcode":
            values = _tokens(name, raw)
            if any(not (len(v) == 5 and v.isdigit()) for v in values):
                raise BadRequest(f"{name}: French postal codes of five digits", expression=[name])
            found[name] = found.get(name, ()) + values
        elif name in ("service-type", "specialty"):
            found[name] = found.get(name, ()) + _codes_only(name, raw)
        elif name == "_security":
            values = _tokens(name, raw)
            codes = []
            for value in values:
                system, _, code = value.rpartition("|")
                if (system and system != SLOT_TYPE_SYSTEM) or code not in SLOT_TYPES:
                    raise BadRequest(
                        f"_security: slot types of {SLOT_TYPE_SYSTEM}: " + ", ".join(SLOT_TYPES),
                        expression=[name],
                    )
                codes.append(code)
            found[name] = found.get(name, ()) + tuple(codes)
        elif name == "_include":
            if raw not in INCLUDES | ITERATES:
                raise BadRequest(f"_include: supported {', '.join(sorted(INCLUDES))}", expression=[name])
            (includes if raw in INCLUDES else iterates).add(raw)
        elif name == "_include:iterate":
            if raw not in ITERATES:
                raise BadRequest(f"_include:iterate: supported {', '.join(sorted(ITERATES))}", expression=[name])
            iterates.add(raw)
        elif name == "_count":
            count = _integer(name, raw, MAX_COUNT)
            continue
        elif name == "_offset":
            offset = _integer(name, raw, MAX_OFFSET)
            continue
        elif name == "_format":
            if raw not in ("json", "application/json", "application/fhir+json", "application/json+fhir"):
                raise BadRequest("_format: this server answers in JSON only", expression=[name])
        else:
            raise BadRequest(f"unknown search parameter {name!r} for Slot", expression=[name])
        canonical.append((name, raw))
    if start_ge is None or start_le is None:
        raise BadRequest("start=ge... and start=le... are both required (SAS IG)", expression=["start"])
    if start_le < start_ge or start_le - start_ge > MAX_WINDOW:
        raise BadRequest(f"the start window must be ordered and at most {MAX_WINDOW.days} days", expression=["start"])
    criteria = SlotSearch(
        start_ge=start_ge.astimezone(UTC),
        start_le=start_le.astimezone(UTC),
        status=status,
        practitioners=found.get("schedule.actor:Practitioner.identifier", ()),
        roles=found.get("schedule.actor:PractitionerRole.identifier", ()),
        postal_codes=found.get("schedule.actor:Location.address-postalcode", ()),
        types=found.get("_security", ()),
        service_types=found.get("service-type", ()),
        specialties=found.get("specialty", ()),
    )
    include_schedule = "Slot:schedule" in includes
    return SlotQuery(criteria, offset, count, include_schedule, include_schedule and bool(iterates), tuple(canonical))


RPPS_SYSTEM = "urn:oid:1.2.250.1.71.4.2.1"
BOOKABLE = (AppointmentStatus.PENDING, AppointmentStatus.BOOKED)


def booking_command(data: dict[str, Any], sas_org_id: str) -> BookSlot:
    """An Appointment in the SAS IG's shape (FrAppointmentSAS) booking a searched slot for a Relais request."""
    appointment = validated(Appointment, data, "Appointment")
    try:
        status = parse_status(appointment.status or "")
    except ValueError:
        status = None
    if status not in BOOKABLE:
        raise Unprocessable(
            "a new Appointment is pending or booked; later statuses go through "
            "POST /snp/fhir/Appointment/{id}/$status",
            expression=["Appointment.status"],
        )
    requests = [
        r.reference.removeprefix("ServiceRequest/")
        for r in appointment.basedOn or []
        if r.reference and r.reference.startswith("ServiceRequest/")
    ]
    if not requests:
        raise Unprocessable(
            "Appointment.basedOn must name the ServiceRequest Relais answered (the patient travels there)",
            expression=["Appointment.basedOn"],
        )
    slots = [s.reference.removeprefix("Slot/") for s in appointment.slot or [] if s.reference]
    practitioners = [
        f"{p.actor.identifier.system}|{p.actor.identifier.value.strip()}"
        for p in appointment.participant or []
        if p.actor is not None
        and p.actor.identifier is not None
        and p.actor.identifier.system == RPPS_SYSTEM
        and p.actor.identifier.value
    ]
    start = utc_instant(appointment.start)
    if not slots and not (practitioners and start):
        raise Unprocessable(
            "name the slot (Appointment.slot) or the effecteur (participant.actor.identifier, RPPS) and start",
            expression=["Appointment.slot"],
        )
    return BookSlot(
        sas_org_id,
        requests[0],
        slots[0] if slots else None,
        practitioners[0] if practitioners else None,
        start,
        status,
    )
