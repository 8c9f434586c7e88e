"""Commands the snp entrypoints build and the handlers carry out (imperative names)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from services.snp.domain import AppointmentStatus, Urgency
from shared.mirrors import MirrorCareTeam as MirrorCareTeam  # the registry mirror's commands are the kernel's
from shared.mirrors import MirrorTerritory as MirrorTerritory


@dataclass(frozen=True)
class ActorInput:
    """A Schedule actor: a Practitioner, PractitionerRole or Location, with what SAS searches it by."""

    kind: str
    client_id: str
    identifier: str | None  # "system|value"
    resource: dict = field(default_factory=dict, hash=False, compare=False)


@dataclass(frozen=True)
class ScheduleInput:
    entry: int
    client_id: str
    commune: str  # INSEE code
    references: tuple[str, ...]  # how slots of the same Bundle may point at it (fullUrl, Schedule/id)
    postal_code: str | None = None
    actors: tuple[ActorInput, ...] = ()


@dataclass(frozen=True)
class SlotInput:
    entry: int
    client_id: str
    schedule_reference: str
    start: datetime
    end: datetime
    types: tuple[str, ...] = ("SNP",)  # TRE_R314 codes
    service_types: tuple[str, ...] = ()
    specialties: tuple[str, ...] = ()
    detail: dict = field(default_factory=dict, hash=False, compare=False)  # coded elements served back


@dataclass(frozen=True)
class EntryError:
    entry: int
    status: int
    diagnostics: str


@dataclass(frozen=True)
class PublishAvailability:
    org_id: str
    atomic: bool  # transaction: all or nothing; batch: entry by entry
    schedules: tuple[ScheduleInput, ...]
    slots: tuple[SlotInput, ...]
    errors: tuple[EntryError, ...] = field(default_factory=tuple)
    entries: int = 0
    actor_entries: tuple[int, ...] = ()  # Practitioner, PractitionerRole, Location: kept with their Schedule


@dataclass(frozen=True)
class WithdrawSlot:
    org_id: str
    slot_id: str


@dataclass(frozen=True)
class RequestSnp:
    sas_org_id: str
    identifier: str | None
    patient_system: str
    patient_value: str
    commune: str
    urgency: Urgency
    reason: str


@dataclass(frozen=True)
class ChangeAppointmentStatus:
    org_id: str
    role: str
    appointment_id: str
    status: AppointmentStatus


@dataclass(frozen=True)
class PlaceWaitingRequest:
    """Try again to place one request still waiting before its deadline (new slots may have come)."""

    request_id: str


@dataclass(frozen=True)
class ExpireRequest:
    """A request unplaced at its deadline expires and goes to the CPTS, exactly once."""

    request_id: str


@dataclass(frozen=True)
class BookSlot:
    """The SAS books a chosen slot for one of its requests (ANS SAS IG: create Appointment)."""

    sas_org_id: str
    request_id: str
    slot_id: str | None  # Slot/{id} as the search returned it, or found by practitioner and start
    practitioner: str | None  # "system|value" of the effecteur (RPPS)
    start: datetime | None
    status: AppointmentStatus
