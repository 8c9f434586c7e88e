"""Bookings and outcomes: the effecteur or the SAS moves an appointment through its statuses."""

from __future__ import annotations

from services.snp.commands import ChangeAppointmentStatus
from services.snp.deps import Deps
from services.snp.domain import AppointmentStatus, can_move
from services.snp.handlers.publish import domain_event, notify, patient_context
from services.snp.resources import appointment_resource
from services.snp.uow import SnpUnitOfWork
from services.snp.views import RequestView, detached
from shared.errors import Conflict, NotFound
from shared.events import EventType, Role

STATUS_EVENTS = {
    AppointmentStatus.BOOKED: EventType.SNP_BOOKED,
    AppointmentStatus.FULFILLED: EventType.SNP_FULFILLED,
    AppointmentStatus.NOSHOW: EventType.SNP_NOSHOW,
    AppointmentStatus.CANCELLED: EventType.SNP_CANCELLED,
}


def change_appointment_status(
    command: ChangeAppointmentStatus, uow: SnpUnitOfWork, deps: Deps
) -> RequestView:
    now = deps.clock()
    with uow:
        appointment = uow.appointments.get(command.appointment_id)
        request = uow.requests.get(appointment.request_id) if appointment else None
        if appointment is None or request is None:
            raise NotFound(f"no Appointment {command.appointment_id}")
        allowed = (command.role == Role.TEAM and appointment.org_id == command.org_id) or (
            command.role == Role.SAS and request.sas_org_id == command.org_id
        )
        if not allowed:
            # Our transaction ends first (rows are expired: only the command is read from here on); the
            # refusal is written in a transaction of its own, and SQLite lets one writer in at a time.
            uow.rollback()
            deps.record_refusal(
                "snp.appointment-status",
                organisation_id=command.org_id,
                role=str(command.role),
                resource=f"Appointment/{command.appointment_id}",
                reason="not-a-party",
            )
            # 404 like an unknown appointment: no existence oracle for the other parties' appointments.
            raise NotFound(f"no Appointment {command.appointment_id}")
        current = AppointmentStatus(appointment.status)
        if current == command.status:
            return detached(uow, request, appointment, created=False)
        if not can_move(current, command.status, now=now, start=appointment.start):
            raise Conflict(
                f"an appointment {current.value} cannot become {command.status.value}"
                + (" before its start" if command.status.value in ("fulfilled", "noshow") else "")
            )
        appointment.status, appointment.updated_at = command.status.value, now
        if command.status is AppointmentStatus.CANCELLED:
            uow.slots.release(appointment.slot_id, now)
        fact = uow.facts.get(request.id)
        if fact is not None:
            fact.appointment_status = command.status.value
        event = STATUS_EVENTS.get(command.status)
        if event is not None:
            source_id = f"snp:{appointment.id}:{event.value}"
            domain_event(uow, event, request, source_id, appointment)
            notify(
                uow,
                event,
                patient_context(uow, request, team_org_id=appointment.org_id),
                source_id=source_id,
                request=request,
                reference=f"Appointment/{appointment.id}",
                focus=[appointment_resource(appointment, request)],
                now=now,
                occurred_at=now,
            )
        uow.audit.record(
            "snp.appointment-status",
            outcome="ok",
            organisation_id=command.org_id,
            role=str(command.role),
            resource=f"Appointment/{appointment.id}",
            detail={"from": current.value, "to": command.status.value},
        )
        uow.commit()
        return detached(uow, request, appointment, created=False)
