"""Discharge domain: commands, facts read from the hospital's message, and the pure rules of the handoff,
the follow-up plan, complexity, readmission and escalation. No I/O here."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from shared import idempotence
from shared.errors import Conflict, Unprocessable
from shared.events import EventType, Role
from shared.idempotence import check_replay, fingerprint  # noqa: F401 - the domain's vocabulary
from shared.routing import (
    ADMISSION_EVENTS,
    COMPLEXITY_CRITERIA,
    DISCHARGE_EVENTS,
    Detail,
    PatientContext,
    Recipient,
    is_complex,
)

ADMISSIONS_ENDPOINT = "/admissions/fhir/$process-message"
RELAIS_BASE = "https://relais.example.org/fhir"
# Relais' code systems and extension for what hospitals send us beyond core FHIR.
COMPLEXITY_SYSTEM = f"{RELAIS_BASE}/CodeSystem/complexity-criterion"
COMPLEXITY_EXTENSION = f"{RELAIS_BASE}/StructureDefinition/complexity-criterion"
FOLLOWUP_SYSTEM = f"{RELAIS_BASE}/CodeSystem/followup-activity"
TASK_CODE_SYSTEM = f"{RELAIS_BASE}/CodeSystem/task-code"
PATIENT_KEY_SYSTEM = f"{RELAIS_BASE}/NamingSystem/patient-key"
ORGANISATION_SYSTEM = f"{RELAIS_BASE}/NamingSystem/organisation"

HOSPITAL_REQUEST = "hospital-request"
READMISSION_30D = "readmission-30d"
READMISSION_WINDOW = timedelta(days=30)
# PRADO-like default when the hospital sends no plan: the médecin traitant sees the patient within 7 days.
DEFAULT_GP_VISIT = ("gp-visit", "Consultation du médecin traitant sous 7 jours", timedelta(days=7))

# Namespace of every deterministic id this service derives (notifications, tasks, timers).
_NAMESPACE = uuid.UUID("0b6a54c1-3f1e-4d52-9a9c-6d2f3a7c8e41")

# ICD-10 prefixes that make a Condition count as a complexity criterion (DESIGN §2 seed examples).
ICD10_CRITERIA: tuple[tuple[str, str], ...] = (
    ("C", "cancer"),
    ("E10", "diabetes"),
    ("E11", "diabetes"),
    ("E12", "diabetes"),
    ("E13", "diabetes"),
    ("E14", "diabetes"),
    ("N17", "renal-failure"),
    ("N18", "renal-failure"),
    ("N19", "renal-failure"),
    ("F", "mental-health"),
    ("R54", "frailty"),
    ("Z59", "precarity"),
    ("Z60.2", "isolation"),
)
ICD10_SYSTEMS = frozenset({"http://hl7.org/fhir/sid/icd-10", "http://hl7.org/fhir/sid/icd-10-fr"})

DISCHARGE_STATUSES = frozenset({"finished"})
CANCELLATION_STATUSES = frozenset({"finished", "cancelled", "entered-in-error"})


class DischargeStatus:
    RECORDED = "recorded"
    CORRECTED = "corrected"
    CANCELLED = "cancelled"


class HandoffStatus:
    """FHIR Task.status values the handoff goes through."""

    REQUESTED = "requested"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    CANCELLED = "cancelled"
    EXPIRED = "failed"  # FHIR has no "expired": a Task nobody took is failed, businessStatus says why


class FollowupStatus:
    REQUESTED = "requested"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


class TimerKind:
    HANDOFF_EXPIRY = "handoff-expiry"
    FOLLOWUP_MISSED = "followup-missed"


# (status, action) -> new status: the whole handoff state machine.
HANDOFF_TRANSITIONS: dict[tuple[str, str], str] = {
    (HandoffStatus.REQUESTED, "accept"): HandoffStatus.ACCEPTED,
    (HandoffStatus.REQUESTED, "decline"): HandoffStatus.REJECTED,
    (HandoffStatus.REQUESTED, "cancel"): HandoffStatus.CANCELLED,
    (HandoffStatus.ACCEPTED, "cancel"): HandoffStatus.CANCELLED,
    (HandoffStatus.REQUESTED, "expire"): HandoffStatus.EXPIRED,
}
HANDOFF_EVENTS: dict[str, EventType] = {
    "accept": EventType.HANDOFF_ACCEPTED,
    "decline": EventType.HANDOFF_DECLINED,
    "expire": EventType.HANDOFF_EXPIRED,
    "cancel": EventType.HANDOFF_CANCELLED,
}


# --- value objects ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class PatientIdentity:
    system: str
    value: str


@dataclass(frozen=True)
class HospitalReferent:
    name: str | None
    phone: str | None
    mssante: str | None
    rpps: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "phone": self.phone, "mssante": self.mssante, "rpps": self.rpps}


@dataclass(frozen=True)
class FollowupPlanItem:
    code: str
    display: str
    due_at: datetime


@dataclass(frozen=True)
class DischargeFacts:
    """What a discharge message says, extracted and validated; `resources` keep the FHIR for the team."""

    hospital_org_id: str
    encounter_key: str
    encounter_status: str
    started_at: datetime | None
    discharged_at: datetime
    disposition: str
    patient: PatientIdentity
    birth_date: date | None
    postal_code: str | None
    commune: str | None
    referent: HospitalReferent
    letter: str | None
    followups: tuple[FollowupPlanItem, ...]
    flags: frozenset[str]
    encounter: dict[str, Any] = field(repr=False)
    resources: tuple[dict[str, Any], ...] = field(default=(), repr=False)


# --- commands (imperative) ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _DischargeMessage:
    message_id: str
    fingerprint: str
    event_type: EventType
    caller_org_id: str
    facts: DischargeFacts
    request_header: dict[str, Any] = field(repr=False)


class RecordDischarge(_DischargeMessage):
    pass


class ReviseDischarge(_DischargeMessage):
    pass


class CancelDischarge(_DischargeMessage):
    pass


@dataclass(frozen=True)
class AcceptHandoff:
    task_id: str
    team_org_id: str


@dataclass(frozen=True)
class DeclineHandoff:
    task_id: str
    team_org_id: str
    reason: str


@dataclass(frozen=True)
class CancelHandoff:
    task_id: str
    hospital_org_id: str
    reason: str | None = None


@dataclass(frozen=True)
class CompleteFollowup:
    task_id: str
    team_org_id: str
    done_at: datetime | None = None


@dataclass(frozen=True)
class MirrorCareTeam:
    message_id: str
    sent_at: str
    data: Mapping[str, Any]


@dataclass(frozen=True)
class MirrorTerritory:
    message_id: str
    data: Mapping[str, Any]


@dataclass(frozen=True)
class Policy:
    """The configurable parts of the rules: delays and criteria."""

    handoff_expiry: timedelta = timedelta(hours=48)
    followup_grace: timedelta = timedelta(hours=48)
    readmission_window: timedelta = READMISSION_WINDOW
    criteria: frozenset[str] = COMPLEXITY_CRITERIA
    source_endpoint: str = f"{RELAIS_BASE}/discharge"


# --- rules --------------------------------------------------------------------------------------------


def command_for(event_type: EventType) -> type[_DischargeMessage]:
    """The command an intake event asks for; an admission is a 422 naming the admissions endpoint."""
    if event_type in ADMISSION_EVENTS:
        raise Unprocessable(
            f"{event_type.value} is an admission message: send it to {ADMISSIONS_ENDPOINT}",
            issue_code="not-supported",
            expression=["Bundle.entry[0].resource.eventCoding"],
        )
    if event_type not in DISCHARGE_EVENTS:
        raise Unprocessable(
            f"{event_type.value} is not a discharge event; this endpoint takes discharges, "
            "their corrections and cancellations",
            issue_code="not-supported",
            expression=["Bundle.entry[0].resource.eventCoding"],
        )
    return {
        EventType.DISCHARGE_RECORDED: RecordDischarge,
        EventType.DISCHARGE_CORRECTED: ReviseDischarge,
        EventType.DISCHARGE_CANCELLED: CancelDischarge,
    }[event_type]


def derived_id(source_id: str, *parts: str) -> str:
    return idempotence.derived_id(_NAMESPACE, source_id, *parts)


def notification_id(source_id: str, recipient: Recipient, event: EventType) -> str:
    # docs/events.md: uuid5 of the source message id, the recipient, the role (and the event).
    return derived_id(source_id, recipient.organisation_id, recipient.role.value, event.value)


def check_encounter_status(event_type: EventType, status: str) -> None:
    allowed = CANCELLATION_STATUSES if event_type is EventType.DISCHARGE_CANCELLED else DISCHARGE_STATUSES
    if status not in allowed:
        raise Unprocessable(
            f"Encounter.status {status!r} does not describe a discharge; expected one of "
            + ", ".join(sorted(allowed)),
            expression=["Encounter.status"],
        )


def check_hospital(caller_org_id: str, finess: str) -> None:
    from shared.errors import Forbidden

    if caller_org_id != finess:
        raise Forbidden(
            f"the message is sent for hospital FINESS {finess}, but your organisation is {caller_org_id}",
            expression=["MessageHeader.sender"],
        )


def criteria_from_condition(codes: Iterable[tuple[str | None, str | None]]) -> set[str]:
    """Complexity criteria named by a Condition's codings: Relais codes as they are, ICD-10 by prefix."""
    found: set[str] = set()
    for system, code in codes:
        if not code:
            continue
        if system == COMPLEXITY_SYSTEM:
            found.add(code.strip().lower())
        elif system in ICD10_SYSTEMS:
            normalised = code.strip().upper()
            for prefix, criterion in ICD10_CRITERIA:
                if normalised.startswith(prefix):
                    found.add(criterion)
    return found


def is_readmission(
    prior_discharges: Iterable[datetime], started_at: datetime | None, window: timedelta
) -> bool:
    """Admitted again within `window` after an earlier discharge of the same patient."""
    if started_at is None:
        return False
    return any(d <= started_at and started_at - d <= window for d in prior_discharges)


def complexity(
    flags: Iterable[str], readmission: bool, criteria: frozenset[str]
) -> tuple[frozenset[str], bool]:
    """All criteria met (readmission counts as one) and whether they make the case complex."""
    met = {f.strip().lower() for f in flags}
    if readmission:
        met.add(READMISSION_30D)
    return frozenset(met), is_complex(met, criteria)


def default_followups(discharged_at: datetime) -> tuple[FollowupPlanItem, ...]:
    code, display, delay = DEFAULT_GP_VISIT
    return (FollowupPlanItem(code, display, discharged_at + delay),)


def next_handoff_status(status: str, action: str, task_id: str) -> str:
    new = HANDOFF_TRANSITIONS.get((status, action))
    if new is None:
        raise Conflict(f"Task {task_id} is {status}: it cannot be {action}ed now", expression=["Task.status"])
    return new


def check_decline_reason(reason: str | None) -> str:
    if not reason or not reason.strip():
        raise Unprocessable("declining a handoff needs a reason", expression=["Parameters.parameter.reason"])
    return reason.strip()[:1000]


@dataclass(frozen=True)
class MirrorState:
    """The discharge service's copy of the patient's coordination context (docs/events.md mirror)."""

    team_org_id: str | None = None
    team_active: bool = False
    referent: dict[str, Any] | None = None
    consent_opposed: bool = False
    dac_case_open: bool = False
    dac_org_id: str | None = None
    postal_code: str | None = None


@dataclass(frozen=True)
class TerritoryState:
    cpts_org_id: str | None = None
    dac_org_id: str | None = None


def patient_context(
    *,
    mirror: MirrorState | None,
    territory: TerritoryState | None,
    hospital_org_id: str | None,
    complex_case: bool,
    team_org_id: str | None = None,
    handoff_failed: bool = False,
    escalation_level: int = 0,
) -> PatientContext:
    """Routing context; `team_org_id` pins the team a handoff targeted, whatever the mirror says now."""
    mirror = mirror or MirrorState()
    territory = territory or TerritoryState()
    team = team_org_id if team_org_id is not None else (mirror.team_org_id if mirror.team_active else None)
    # The DAC already following the patient comes first; else the territory's.
    dac = mirror.dac_org_id if mirror.dac_case_open and mirror.dac_org_id else territory.dac_org_id
    return PatientContext(
        team_org_id=team,
        hospital_org_id=hospital_org_id,
        cpts_org_id=territory.cpts_org_id,
        dac_org_id=dac,
        dac_case_open=mirror.dac_case_open,
        complex_case=complex_case,
        consent_opposed=mirror.consent_opposed,
        handoff_failed=handoff_failed,
        escalation_level=escalation_level,
    )


def correction_recipients(original: list[Recipient], event_type: EventType) -> list[Recipient]:
    """A correction or cancellation goes to the original's recipients, nobody else, at the same detail."""
    reason = f"{event_type.value}/original-recipient"
    return [Recipient(r.role, r.organisation_id, r.detail, r.topic, reason) for r in original]


def recipients_to_json(recipients: Iterable[Recipient]) -> list[dict[str, str]]:
    return [
        {
            "role": r.role.value,
            "organisation_id": r.organisation_id,
            "detail": r.detail.value,
            "topic": r.topic,
            "reason": r.reason,
        }
        for r in recipients
    ]


def recipients_from_json(items: Iterable[Mapping[str, str]]) -> list[Recipient]:
    return [
        Recipient(Role(i["role"]), i["organisation_id"], Detail(i["detail"]), i["topic"], i["reason"])
        for i in items
    ]


def notification_data(
    recipient: Recipient,
    event: EventType,
    *,
    patient_key: str,
    sender: str | None,
    subject: str,
    payload: Mapping[str, Any],
) -> dict[str, Any]:
    """The `relais.notify.*` data contract of docs/events.md."""
    return {
        "recipient": recipient.organisation_id,
        "role": recipient.role.value,
        "detail": recipient.detail.value,
        "event": event.value,
        "patient_key": patient_key,
        "sender": sender,
        "subject": subject,
        "payload": dict(payload),
    }


def as_utc(value: datetime) -> datetime:
    """Aware UTC datetime (SQLite hands back naive values it stored as UTC)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def fhir_instant(value: datetime) -> str:
    return as_utc(value).isoformat(timespec="seconds").replace("+00:00", "Z")
