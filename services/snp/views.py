"""Reads of the snp service: requests and appointments as their parties may see them, the CPTS dashboard."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from services.snp.adapters.orm import AppointmentRow, RequestRow
from services.snp.dashboard import Fact, dashboard
from services.snp.domain import PARIS, SlotSearch, communes
from services.snp.resources import appointment_resource, searchset, service_request_resource
from services.snp.uow import SnpUnitOfWork
from shared.carecircle import CircleFacts, NotInCircle, Purpose, allows
from shared.errors import Forbidden, Unprocessable
from shared.events import Role


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


@dataclass
class AppointmentView:
    request: RequestRow
    appointment: AppointmentRow


def detached(
    uow: SnpUnitOfWork, request: RequestRow, appointment: AppointmentRow | None, created: bool
) -> RequestView:
    # Leaving the unit of work rolls back, which would expire these rows; callers read them afterwards.
    uow.session.flush()
    uow.session.expunge_all()
    return RequestView(request, appointment, created)


def _party(role: str, org_id: str, request: RequestRow, appointment: AppointmentRow | None) -> bool:
    """The SAS that asked, or the team holding the booking (its care circle for this request, kernel policy);
    anyone else gets the 404 an unknown id gets."""
    if role == Role.SAS:
        return request.sas_org_id == org_id
    booked = CircleFacts(team_org_id=appointment.org_id if appointment is not None else None)
    return allows(role, org_id, booked, Purpose.READ_CLINICAL)


def get_request(uow: SnpUnitOfWork, request_id: str, org_id: str, role: str) -> RequestView:
    with uow:
        request = uow.requests.get(request_id)
        appointment = uow.appointments.for_request(request_id) if request is not None else None
        if request is None or not _party(role, org_id, request, appointment):
            raise NotInCircle(f"ServiceRequest/{request_id}")
        return detached(uow, request, appointment, created=False)


def get_appointment(uow: SnpUnitOfWork, appointment_id: str, org_id: str, role: str) -> AppointmentView:
    with uow:
        appointment = uow.appointments.get(appointment_id)
        request = uow.requests.get(appointment.request_id) if appointment else None
        if appointment is None or request is None or not _party(role, org_id, request, appointment):
            raise NotInCircle(f"Appointment/{appointment_id}")
        detached(uow, request, appointment, created=False)
        return AppointmentView(request, appointment)


def waiting_request_ids(
    uow: SnpUnitOfWork, *, due_before: datetime | None = None, open_after: datetime | None = None, limit: int = 100
) -> list[str]:
    """Requests still waiting: those past their deadline (to expire) or still open (to retry placing)."""
    with uow:
        return [r.id for r in uow.requests.waiting(due_before=due_before, open_after=open_after, limit=limit)]


def territories_of(uow: SnpUnitOfWork, cpts_org_id: str) -> set[str]:
    """A territory is named by the CPTS covering it: a CPTS with postal codes in the mirror has its own."""
    return {cpts_org_id} if uow.mirrors.postal_codes_of_cpts(cpts_org_id) else set()


def territory_dashboard(
    uow: SnpUnitOfWork,
    cpts_org_id: str,
    territory: str | None,
    first_day: date,
    last_day: date,
    *,
    small_cell_threshold: int,
) -> dict[str, Any]:
    """The dashboard of whole Paris days `first_day` to `last_day` included (services/snp/dashboard.py)."""
    start = datetime.combine(first_day, time(), PARIS)
    end = datetime.combine(last_day + timedelta(days=1), time(), PARIS)
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
    table = communes()
    names = {f.commune: table[f.commune].name for f in facts if f.commune in table}
    return {
        "territory": territory,
        "from": first_day.isoformat(),
        "to": last_day.isoformat(),
        **dashboard(facts, names, small_cell_threshold=small_cell_threshold),
    }


def search_slots(
    uow: SnpUnitOfWork,
    criteria: SlotSearch,
    *,
    offset: int,
    count: int,
    include_schedule: bool,
    include_actors: bool,
    base: str,
    links: Callable[[int], list[tuple[str, str]]],
) -> dict[str, Any]:
    """The SAS platform's Slot search as the IG's searchset; `links(total)` gives self/next/previous."""
    with uow:
        total, slots = uow.slots.search(criteria, offset, count)
        schedule_ids = {slot.schedule_id for slot in slots}
        schedules = uow.schedules.many(schedule_ids) if include_schedule else []
        # Without the actors included, a Schedule still names them, so its references must be built alike.
        named = uow.schedules.actors_of(schedule_ids) if include_schedule else []
        bundle = searchset(base=base, total=total, slots=slots, schedules=schedules, actors=named, links=links(total))
        if not include_actors:
            kinds = {"Practitioner", "PractitionerRole", "Location"}
            bundle["entry"] = [e for e in bundle["entry"] if e["resource"]["resourceType"] not in kinds]
        return bundle
