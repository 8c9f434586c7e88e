"""One function per command or event; each takes a unit of work and the clock, and only the UoW commits."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from services.snp.adapters.orm import (
    AppointmentRow,
    CareTeamMirrorRow,
    FactRow,
    RequestRow,
    ScheduleRow,
    SlotRow,
    TerritoryMirrorRow,
)
from services.snp.adapters.repositories import BUSY, FREE, WITHDRAWN
from services.snp.commands import (
    ChangeAppointmentStatus,
    EntryError,
    PublishAvailability,
    RequestSnp,
    WithdrawSlot,
)
from services.snp.domain import (
    AppointmentStatus,
    Fact,
    RequestState,
    can_move,
    communes,
    dashboard,
    deadline_for,
    placement_order,
)
from services.snp.resources import appointment_resource, service_request_resource
from services.snp.uow import SnpUnitOfWork
from shared.bus.envelope import Envelope
from shared.db.uow import handle_once
from shared.errors import Conflict, Forbidden, NotFound, Unprocessable
from shared.events import TOPIC_SNP, EventType, Role
from shared.fhir.builders import RELAIS_ENDPOINT, message_bundle
from shared.identifiers import patient_key
from shared.minimise import minimise, shape_for
from shared.routing import Detail, PatientContext, route

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
UowFactory = Callable[[], SnpUnitOfWork]
SOURCE = "snp"
# Ids minted here are stable: re-publishing a slot or re-sending an event never creates a second one.
NAMESPACE = uuid.UUID("6f1d2c1e-7a57-4c1b-9a7e-5e0d1f3b8a11")
CARETEAM_CONSUMER = "snp.careteam"
MAX_PLACEMENT_ROUNDS = 3


def system_clock() -> datetime:
    return datetime.now(UTC)


def stable_id(*parts: str) -> str:
    return str(uuid.uuid5(NAMESPACE, "|".join(parts)))


class EntryErrors(Unprocessable):
    """A transaction Bundle with bad entries: every issue is reported, nothing is stored."""

    def __init__(self, errors: list[EntryError]) -> None:
        super().__init__(f"{len(errors)} entries were refused; nothing was stored")
        self.issues = [
            {
                "severity": "error",
                "code": "processing" if e.status == 422 else "invalid",
                "diagnostics": e.diagnostics,
                "expression": [f"Bundle.entry[{e.entry}]"],
            }
            for e in errors
        ]


# --- notifications (docs/events.md) -------------------------------------------------------------


def _context(uow: SnpUnitOfWork, request: RequestRow, team_org_id: str | None = None) -> PatientContext:
    mirror = uow.mirrors.careteam(request.patient_key)
    own_team = mirror.team_org_id if mirror and mirror.status == "active" else None
    commune = communes().get(request.commune)
    territory = uow.mirrors.territory(commune.postal_code) if commune else None
    return PatientContext(
        team_org_id=team_org_id or own_team,
        hospital_org_id=None,
        cpts_org_id=territory.cpts_org_id if territory else None,
        dac_org_id=None,
        consent_opposed=bool(mirror and mirror.consent_opposed),
    )


def _own_team(uow: SnpUnitOfWork, request: RequestRow) -> str | None:
    mirror = uow.mirrors.careteam(request.patient_key)
    return mirror.team_org_id if mirror and mirror.status == "active" else None


def _notify(
    uow: SnpUnitOfWork,
    event: EventType,
    ctx: PatientContext,
    *,
    source_id: str,
    request: RequestRow,
    subject: str,
    focus: list[dict[str, Any]],
    now: datetime,
    occurred_at: datetime,
) -> int:
    minimal = minimise(
        {},
        event_type=event,
        patient_key=request.patient_key,
        commune=request.commune,
        birth_date=None,
        occurred_at=occurred_at,
        recorded_at=now,
    )
    recipients = route(event, ctx)
    for recipient in recipients:
        if recipient.detail is Detail.FULL:
            payload = message_bundle(
                event,
                source_endpoint=RELAIS_ENDPOINT,
                focus=focus,
                message_id=stable_id(source_id, "bundle", recipient.organisation_id),
            )
        else:
            payload = shape_for(recipient, {}, minimal)
        data = {
            "recipient": recipient.organisation_id,
            "role": recipient.role.value,
            "detail": recipient.detail.value,
            "event": event.value,
            # Organisational detail carries no patient data at all, not even the pseudonym.
            "patient_key": None if recipient.detail is Detail.ORGANISATIONAL else request.patient_key,
            "sender": request.sas_org_id,
            "subject": subject,
            "payload": payload,
        }
        # docs/events.md: uuid5 of the source message id, the recipient and the role.
        message_id = stable_id(stable_id(source_id), recipient.organisation_id, recipient.role.value)
        uow.outbox.add(recipient.topic, recipient.organisation_id, event.value, data, message_id=message_id)
    return len(recipients)


def _domain_event(
    uow: SnpUnitOfWork,
    event: EventType,
    request: RequestRow,
    source_id: str,
    appointment: AppointmentRow | None = None,
) -> None:
    data = {
        "request_id": request.id,
        "state": request.state,
        "urgency": request.urgency,
        "reason": request.reason,
        "commune": request.commune,
        "territory": request.territory,
        "deadline_at": request.deadline_at.isoformat(),
    }
    if appointment is not None:
        data |= {
            "appointment_id": appointment.id,
            "status": appointment.status,
            "effecteur": appointment.org_id,
            "start": appointment.start.isoformat(),
            "via": appointment.via,
        }
    uow.outbox.add(TOPIC_SNP, request.patient_key, event.value, data, message_id=stable_id(source_id))


# --- availability -------------------------------------------------------------------------------


@dataclass
class EntryResult:
    entry: int
    status: int
    location: str | None = None
    diagnostics: str | None = None


def publish_availability(uow: SnpUnitOfWork, command: PublishAvailability, clock: Clock) -> list[EntryResult]:
    """Upserts the org's Schedules and free SNP Slots; ids are stable per (org, client id)."""
    now = clock()
    errors = list(command.errors)
    results: list[EntryResult] = []
    with uow:
        by_reference: dict[str, ScheduleRow] = {}
        schedule_rows: dict[int, ScheduleRow] = {}
        for schedule in command.schedules:
            commune = communes().get(schedule.commune)
            if commune is None:
                errors.append(
                    EntryError(
                        schedule.entry, 422, f"commune {schedule.commune} is not in a territory Relais serves"
                    )
                )
                continue
            row = uow.schedules.get(stable_id(command.org_id, "schedule", schedule.client_id))
            if row is None:
                row = ScheduleRow(
                    id=stable_id(command.org_id, "schedule", schedule.client_id),
                    org_id=command.org_id,
                    client_id=schedule.client_id,
                    commune=commune.insee,
                    territory=commune.territory,
                    updated_at=now,
                )
                uow.schedules.add(row)
            else:
                row.commune, row.territory, row.updated_at = commune.insee, commune.territory, now
            for reference in schedule.references:
                by_reference[reference] = row
            schedule_rows[schedule.entry] = row
            by_reference[f"Schedule/{row.id}"] = row
        for slot in command.slots:
            schedule = by_reference.get(slot.schedule_reference) or _known_schedule(
                uow, command.org_id, slot.schedule_reference
            )
            if schedule is None:
                errors.append(
                    EntryError(
                        slot.entry,
                        422,
                        f"Slot.schedule {slot.schedule_reference} is neither in "
                        "this Bundle nor a Schedule of your organisation",
                    )
                )
                continue
            slot_id = stable_id(command.org_id, "slot", slot.client_id)
            row = uow.slots.get(slot_id)
            if row is None:
                uow.slots.add(
                    SlotRow(
                        id=slot_id,
                        schedule_id=schedule.id,
                        org_id=command.org_id,
                        client_id=slot.client_id,
                        commune=schedule.commune,
                        territory=schedule.territory,
                        status=FREE,
                        start=slot.start,
                        end=slot.end,
                        updated_at=now,
                    )
                )
                results.append(EntryResult(slot.entry, 201, f"Slot/{slot_id}"))
            elif row.status == BUSY:
                # A booked slot keeps its time: moving it would move a patient's appointment.
                errors.append(EntryError(slot.entry, 409, f"Slot {slot_id} is booked and cannot change"))
            else:
                row.schedule_id, row.commune, row.territory = (
                    schedule.id,
                    schedule.commune,
                    schedule.territory,
                )
                row.status, row.start, row.end, row.updated_at = FREE, slot.start, slot.end, now
                results.append(EntryResult(slot.entry, 200, f"Slot/{slot_id}"))
        if errors and command.atomic:
            raise EntryErrors(sorted(errors, key=lambda e: e.entry))
        uow.audit.record(
            "snp.publish-availability",
            outcome="ok",
            organisation_id=command.org_id,
            role="team",
            detail={"slots": len(results), "refused": len(errors)},
        )
        uow.commit()
    results.extend(EntryResult(e.entry, e.status, diagnostics=e.diagnostics) for e in errors)
    results.extend(EntryResult(entry, 200, f"Schedule/{row.id}") for entry, row in schedule_rows.items())
    return sorted(results, key=lambda r: r.entry)


def _known_schedule(uow: SnpUnitOfWork, org_id: str, reference: str) -> ScheduleRow | None:
    if not reference.startswith("Schedule/"):
        return None
    key = reference.removeprefix("Schedule/")
    row = uow.schedules.get(key) or uow.schedules.get(stable_id(org_id, "schedule", key))
    return row if row is not None and row.org_id == org_id else None


def withdraw_slot(uow: SnpUnitOfWork, command: WithdrawSlot, clock: Clock) -> None:
    now = clock()
    with uow:
        row = uow.slots.get(command.slot_id)
        if row is None:
            raise NotFound(f"no Slot {command.slot_id}")
        if row.org_id != command.org_id:
            raise Forbidden("only the organisation that published a slot may withdraw it")
        if row.status == WITHDRAWN:
            return
        if not uow.slots.withdraw(command.slot_id, command.org_id, now):
            raise Conflict(f"Slot {command.slot_id} is booked; cancel the appointment instead")
        uow.audit.record(
            "snp.withdraw-slot",
            outcome="ok",
            organisation_id=command.org_id,
            role="team",
            resource=f"Slot/{command.slot_id}",
        )
        uow.commit()


# --- requests and placement ---------------------------------------------------------------------


@dataclass
class RequestView:
    request: RequestRow
    appointment: AppointmentRow | None
    created: bool

    def bundle(self) -> dict[str, Any]:
        entries = [
            {
                "fullUrl": f"ServiceRequest/{self.request.id}",
                "resource": service_request_resource(self.request),
            }
        ]
        if self.appointment is not None:
            entries.append(
                {
                    "fullUrl": f"Appointment/{self.appointment.id}",
                    "resource": appointment_resource(self.appointment, self.request),
                }
            )
        return {"resourceType": "Bundle", "type": "collection", "entry": entries}


def _view(
    uow: SnpUnitOfWork, request: RequestRow, appointment: AppointmentRow | None, created: bool
) -> RequestView:
    # Leaving the unit of work rolls back, which would expire these rows; callers read them afterwards.
    uow.session.flush()
    uow.session.expunge_all()
    return RequestView(request, appointment, created)


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
    team = _own_team(uow, request)
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
    _domain_event(uow, EventType.SNP_OFFERED, request, source_id, appointment)
    _notify(
        uow,
        EventType.SNP_OFFERED,
        _context(uow, request, team_org_id=appointment.org_id),
        source_id=source_id,
        request=request,
        subject=f"Appointment/{appointment.id}",
        focus=[appointment_resource(appointment, request), service_request_resource(request)],
        now=now,
        occurred_at=now,
    )


def request_snp(uow: SnpUnitOfWork, command: RequestSnp, clock: Clock, secret: str) -> RequestView:
    now = clock()
    commune = communes().get(command.commune)
    if commune is None:
        raise Unprocessable(
            f"commune {command.commune} is not in a territory Relais serves",
            expression=["ServiceRequest.locationCode"],
        )
    key = patient_key(command.patient_system, command.patient_value, secret)
    with uow:
        if command.identifier:
            existing = uow.requests.by_identifier(command.sas_org_id, command.identifier)
            if existing is not None:
                return _view(uow, existing, uow.appointments.for_request(existing.id), created=False)
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
            territory=commune.territory,
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
        _domain_event(uow, EventType.SNP_REQUESTED, request, source_id)
        _notify(
            uow,
            EventType.SNP_REQUESTED,
            _context(uow, request),
            source_id=source_id,
            request=request,
            subject=f"ServiceRequest/{request.id}",
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
        return _view(uow, request, appointment, created=True)


def retry_waiting(uow_factory: UowFactory, clock: Clock, limit: int = 100) -> int:
    """Tries again to place requests still waiting before their deadline (new slots may have come)."""
    now = clock()
    with uow_factory() as uow:
        ids = [r.id for r in uow.requests.waiting(open_after=now, limit=limit)]
    placed = 0
    for request_id in ids:
        with uow_factory() as uow:
            request = uow.requests.get(request_id)
            if request is None or request.state != RequestState.WAITING.value:
                continue
            appointment = _place(uow, request, now)
            if appointment is None:
                continue
            # The expiry worker may have claimed it meanwhile: then the slot claim rolls back too.
            if not uow.requests.move(request_id, RequestState.WAITING, RequestState.PLACED):
                uow.rollback()
                continue
            request.state = RequestState.PLACED.value
            _record_placement(uow, request, appointment, now)
            uow.commit()
            placed += 1
    return placed


def expire_due(uow_factory: UowFactory, clock: Clock, limit: int = 100) -> int:
    """Requests unplaced at their deadline expire and go to the CPTS (minimised), each exactly once."""
    now = clock()
    with uow_factory() as uow:
        ids = [r.id for r in uow.requests.waiting(due_before=now, limit=limit)]
    expired = 0
    for request_id in ids:
        with uow_factory() as uow:
            # The conditional update is the claim: a second worker gets rowcount 0 and does nothing.
            if not uow.requests.move(request_id, RequestState.WAITING, RequestState.EXPIRED, expired_at=now):
                continue
            request = uow.requests.get(request_id)
            uow.session.refresh(request)
            fact = uow.facts.get(request_id)
            if fact is not None:
                fact.state = RequestState.EXPIRED.value
            source_id = f"snp:{request.id}:{EventType.SNP_EXPIRED.value}"
            _domain_event(uow, EventType.SNP_EXPIRED, request, source_id)
            _notify(
                uow,
                EventType.SNP_EXPIRED,
                _context(uow, request),
                source_id=source_id,
                request=request,
                subject=f"ServiceRequest/{request.id}",
                focus=[service_request_resource(request)],
                now=now,
                occurred_at=request.deadline_at,
            )
            uow.commit()
            expired += 1
    return expired


STATUS_EVENTS = {
    AppointmentStatus.BOOKED: EventType.SNP_BOOKED,
    AppointmentStatus.FULFILLED: EventType.SNP_FULFILLED,
    AppointmentStatus.NOSHOW: EventType.SNP_NOSHOW,
    AppointmentStatus.CANCELLED: EventType.SNP_CANCELLED,
}


def change_appointment_status(
    uow: SnpUnitOfWork, command: ChangeAppointmentStatus, clock: Clock
) -> RequestView:
    now = clock()
    with uow:
        appointment = uow.appointments.get(command.appointment_id)
        if appointment is None:
            raise NotFound(f"no Appointment {command.appointment_id}")
        request = uow.requests.get(appointment.request_id)
        allowed = (command.role == Role.TEAM and appointment.org_id == command.org_id) or (
            command.role == Role.SAS and request.sas_org_id == command.org_id
        )
        if not allowed:
            raise Forbidden("only the effecteur holding the appointment or the requesting SAS may change it")
        current = AppointmentStatus(appointment.status)
        if current == command.status:
            return _view(uow, request, appointment, created=False)
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
            _domain_event(uow, event, request, source_id, appointment)
            _notify(
                uow,
                event,
                _context(uow, request, team_org_id=appointment.org_id),
                source_id=source_id,
                request=request,
                subject=f"Appointment/{appointment.id}",
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
        return _view(uow, request, appointment, created=False)


def get_request(uow: SnpUnitOfWork, request_id: str, org_id: str, role: str) -> RequestView:
    with uow:
        request = uow.requests.get(request_id)
        if request is None:
            raise NotFound(f"no ServiceRequest {request_id}")
        appointment = uow.appointments.for_request(request_id)
        visible = (role == Role.SAS and request.sas_org_id == org_id) or (
            role == Role.TEAM and appointment is not None and appointment.org_id == org_id
        )
        if not visible:
            raise NotFound(f"no ServiceRequest {request_id}")
        return _view(uow, request, appointment, created=False)


def get_appointment(uow: SnpUnitOfWork, appointment_id: str, org_id: str, role: str) -> RequestView:
    with uow:
        appointment = uow.appointments.get(appointment_id)
        request = uow.requests.get(appointment.request_id) if appointment else None
        visible = appointment is not None and (
            (role == Role.TEAM and appointment.org_id == org_id)
            or (role == Role.SAS and request.sas_org_id == org_id)
        )
        if not visible:
            raise NotFound(f"no Appointment {appointment_id}")
        return _view(uow, request, appointment, created=False)


# --- mirrors (relais.careteam) ------------------------------------------------------------------


def on_careteam_message(uow: SnpUnitOfWork, envelope: Envelope, clock: Clock) -> bool:
    """`careteam.changed` and `territory.changed`, each handled once (inbox on the envelope id)."""
    if envelope.type == EventType.CARETEAM_CHANGED.value:
        return handle_once(
            uow, CARETEAM_CONSUMER, envelope.id, lambda u: _mirror_careteam(u, envelope.data, clock())
        )
    if envelope.type == "territory.changed":
        return handle_once(
            uow, CARETEAM_CONSUMER, envelope.id, lambda u: _mirror_territory(u, envelope.data, clock())
        )
    return False


def _mirror_careteam(uow: SnpUnitOfWork, data: dict[str, Any], now: datetime) -> None:
    key = data.get("patient_key")
    if not key:
        raise ValueError("careteam.changed without patient_key")
    row = uow.mirrors.careteam(key)
    if row is None:
        row = CareTeamMirrorRow(patient_key=key, status="inactive", updated_at=now)
        uow.mirrors.add(row)
    row.careteam_id = data.get("careteam_id")
    row.team_org_id = data.get("team_org_id")
    row.status = data.get("status") or "inactive"
    row.consent_opposed = bool(data.get("consent_opposed"))
    row.dac_case_open = bool(data.get("dac_case_open"))
    row.dac_org_id = data.get("dac_org_id")
    row.postal_code = data.get("postal_code")
    row.updated_at = now


def _mirror_territory(uow: SnpUnitOfWork, data: dict[str, Any], now: datetime) -> None:
    postal_code = data.get("postal_code")
    if not postal_code:
        raise ValueError("territory.changed without postal_code")
    row = uow.mirrors.territory(postal_code)
    if row is None:
        row = TerritoryMirrorRow(postal_code=postal_code, updated_at=now)
        uow.mirrors.add(row)
    row.cpts_org_id, row.dac_org_id, row.updated_at = data.get("cpts_org_id"), data.get("dac_org_id"), now


# --- dashboard ----------------------------------------------------------------------------------


def territories_of(uow: SnpUnitOfWork, cpts_org_id: str) -> set[str]:
    postal_codes = uow.mirrors.postal_codes_of_cpts(cpts_org_id)
    return {c.territory for c in communes().values() if c.postal_code in postal_codes}


def territory_dashboard(
    uow: SnpUnitOfWork, cpts_org_id: str, territory: str | None, start: datetime, end: datetime
) -> dict[str, Any]:
    with uow:
        own = territories_of(uow, cpts_org_id)
        if territory is None:
            if len(own) != 1:
                raise Unprocessable(
                    "name the territory: ?territory=" + "|".join(sorted(own))
                    if own
                    else "no territory is attached to your CPTS yet (territory.changed)"
                )
            territory = next(iter(own))
        if territory not in own:
            raise Forbidden(f"territory {territory} is not your CPTS's territory")
        facts = [
            Fact(
                urgency=r.urgency,
                commune=r.commune,
                requested_at=r.requested_at,
                deadline_at=r.deadline_at,
                state=r.state,
                appointment_start=r.appointment_start,
                appointment_status=r.appointment_status,
                effecteur_org_id=r.effecteur_org_id,
            )
            for r in uow.facts.in_period(territory, start, end)
        ]
    names = {c.insee: c.name for c in communes().values()}
    return {
        "territory": territory,
        "from": start.isoformat(),
        "to": end.isoformat(),
        **dashboard(facts, names),
    }
