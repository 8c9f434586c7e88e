"""SAS requests and their placement: own team first, then the territory pool, retried until the deadline."""

from __future__ import annotations

import uuid
from datetime import datetime

from services.snp.adapters.orm import AppointmentRow, FactRow, RequestRow
from services.snp.commands import BookSlot, PlaceWaitingRequest, RequestSnp
from services.snp.deps import Deps
from services.snp.domain import AppointmentStatus, RequestState, communes, deadline_for, placement_order
from services.snp.handlers.publish import domain_event, notify, own_team, patient_context, stable_id, territory_of
from services.snp.resources import appointment_resource, service_request_resource
from services.snp.uow import SnpUnitOfWork
from services.snp.views import RequestView, detached
from shared.errors import Conflict, NotFound, Unprocessable
from shared.events import EventType

MAX_PLACEMENT_ROUNDS = 3


def request_snp(command: RequestSnp, uow: SnpUnitOfWork, deps: Deps) -> RequestView:
    now = deps.clock()
    commune = communes().get(command.commune)
    if commune is None:
        raise Unprocessable(
            f"{command.commune} is not an INSEE commune code", expression=["ServiceRequest.locationCode"]
        )
    key = deps.pseudonymise(command.patient_system, command.patient_value)
    with uow:
        territory = territory_of(uow, commune.postal_codes)
        if territory is None:
            raise Unprocessable(
                f"commune {command.commune} is not in a territory Relais serves (no CPTS covers it)",
                expression=["ServiceRequest.locationCode"],
            )
        if command.identifier:
            existing = uow.requests.by_identifier(command.sas_org_id, command.identifier)
            if existing is not None:
                return detached(uow, existing, uow.appointments.for_request(existing.id), created=False)
        request_id = (
            stable_id("request", command.sas_org_id, command.identifier)
            if command.identifier
            else str(uuid.uuid4())
        )
        request = RequestRow(
            id=request_id,
            sas_org_id=command.sas_org_id,
            identifier=command.identifier or request_id,
            patient_key=key,
            patient_system=command.patient_system,
            patient_value=command.patient_value,
            commune=commune.insee,
            territory=territory,
            urgency=command.urgency.value,
            reason=command.reason,
            state=RequestState.WAITING.value,
            requested_at=now,
            deadline_at=deadline_for(command.urgency, now),
        )
        uow.requests.add(request)
        uow.facts.add(_fact(request))
        uow.requests.flush()
        source_id = f"snp:{request.id}:{EventType.SNP_REQUESTED.value}"
        domain_event(uow, EventType.SNP_REQUESTED, request, source_id)
        notify(
            uow,
            EventType.SNP_REQUESTED,
            patient_context(uow, request),
            source_id=source_id,
            request=request,
            reference=f"ServiceRequest/{request.id}",
            focus=[service_request_resource(request)],
            now=now,
            occurred_at=now,
        )
        appointment = _place(uow, request, now)
        if appointment is not None:
            request.state = RequestState.PLACED.value
            _record_placement(uow, request, appointment, now)
        uow.audit.record(
            "snp.request",
            outcome="ok",
            organisation_id=command.sas_org_id,
            role="sas",
            resource=f"ServiceRequest/{request.id}",
        )
        uow.commit()
        return detached(uow, request, appointment, created=True)


def place_waiting_request(command: PlaceWaitingRequest, uow: SnpUnitOfWork, deps: Deps) -> bool:
    """True when the request found a slot; False when it is no longer waiting or nothing is free yet."""
    now = deps.clock()
    with uow:
        request = uow.requests.get(command.request_id)
        if request is None or request.state != RequestState.WAITING.value:
            return False
        appointment = _place(uow, request, now)
        if appointment is None:
            return False
        # The expiry worker may have claimed it meanwhile: then the slot claim rolls back too.
        if not uow.requests.move(command.request_id, RequestState.WAITING, RequestState.PLACED):
            return False
        request.state = RequestState.PLACED.value
        _record_placement(uow, request, appointment, now)
        uow.commit()
        return True


def _fact(request: RequestRow) -> FactRow:
    return FactRow(
        request_id=request.id,
        territory=request.territory,
        commune=request.commune,
        urgency=request.urgency,
        reason=request.reason,
        state=request.state,
        requested_at=request.requested_at,
        deadline_at=request.deadline_at,
    )


def _place(uow: SnpUnitOfWork, request: RequestRow, now: datetime) -> AppointmentRow | None:
    """Claims the best free slot for `request`; None when no slot before the deadline is left."""
    team = own_team(uow, request)
    for _ in range(MAX_PLACEMENT_ROUNDS):
        own = uow.slots.free_of_org(team, now, request.deadline_at) if team else []
        pool = uow.slots.earliest_free_in_territory(request.territory, now, request.deadline_at)
        if not own and not pool:
            return None
        loads = uow.appointments.loads(s.org_id for s in pool)
        ranked = placement_order(
            own, pool, patient_commune=request.commune, loads=loads, now=now, deadline=request.deadline_at
        )
        for choice in ranked:
            # Losing a race here is normal under load: try the next best slot.
            if not uow.slots.claim(choice.slot.slot_id, now):
                continue
            slot = uow.slots.get(choice.slot.slot_id)
            if slot is None:
                continue
            appointment = AppointmentRow(
                id=stable_id("appointment", request.id, slot.id),
                request_id=request.id,
                slot_id=slot.id,
                org_id=slot.org_id,
                via=choice.via,
                status=AppointmentStatus.PENDING.value,
                start=slot.start,
                end=slot.end,
                created_at=now,
                updated_at=now,
            )
            uow.appointments.add(appointment)
            return appointment
    return None


def _record_placement(
    uow: SnpUnitOfWork, request: RequestRow, appointment: AppointmentRow, now: datetime
) -> None:
    fact = uow.facts.get(request.id)
    if fact is not None:
        fact.state = RequestState.PLACED.value
        fact.appointment_start, fact.appointment_status = appointment.start, appointment.status
        fact.effecteur_org_id = appointment.org_id
    source_id = f"snp:{appointment.id}:{EventType.SNP_OFFERED.value}"
    domain_event(uow, EventType.SNP_OFFERED, request, source_id, appointment)
    notify(
        uow,
        EventType.SNP_OFFERED,
        patient_context(uow, request, team_org_id=appointment.org_id),
        source_id=source_id,
        request=request,
        reference=f"Appointment/{appointment.id}",
        focus=[appointment_resource(appointment, request), service_request_resource(request)],
        now=now,
        occurred_at=now,
    )


def book_slot(command: BookSlot, uow: SnpUnitOfWork, deps: Deps) -> RequestView:
    """A slot the SAS chose from its search: claimed like a placement, then pending or booked at once."""
    now = deps.clock()
    with uow:
        request = uow.requests.get(command.request_id)
        if request is None or request.sas_org_id != command.sas_org_id:
            raise NotFound(f"no ServiceRequest {command.request_id}")
        slot_id = command.slot_id or uow.slots.free_of_practitioner(command.practitioner, command.start)
        existing = uow.appointments.for_request(request.id)
        if existing is not None and existing.status != AppointmentStatus.CANCELLED.value:
            # The same booking again (by slot, or by effecteur and start): the same appointment.
            same_slot = existing.slot_id == (command.slot_id or slot_id)
            if same_slot or (not command.slot_id and existing.start == command.start):
                return detached(uow, request, existing, created=False)
            raise Conflict(f"ServiceRequest {request.id} already has Appointment {existing.id}; cancel it first")
        slot = uow.slots.get(slot_id) if slot_id else None
        if slot is None or "SNP" not in slot.types.split(","):
            raise Unprocessable("no SNP slot of that effecteur at that start: search again (GET /snp/fhir/Slot)")
        if not uow.slots.claim(slot.id, now):
            raise Conflict(f"Slot {slot.id} is no longer free")
        appointment = AppointmentRow(
            id=stable_id("appointment", request.id, slot.id),
            request_id=request.id,
            slot_id=slot.id,
            org_id=slot.org_id,
            via="sas-booking",
            status=command.status.value,
            start=slot.start,
            end=slot.end,
            created_at=now,
            updated_at=now,
        )
        uow.appointments.add(appointment)
        if not uow.requests.move(request.id, RequestState.WAITING, RequestState.PLACED) and existing is None:
            raise Conflict(f"ServiceRequest {request.id} is {request.state}: it cannot be booked")
        request.state = RequestState.PLACED.value
        _record_placement(uow, request, appointment, now)
        uow.audit.record(
            "snp.book-slot",
            outcome="ok",
            organisation_id=command.sas_org_id,
            role="sas",
            resource=f"Appointment/{appointment.id}",
        )
        uow.commit()
        return detached(uow, request, appointment, created=True)
