"""Admissions domain: commands, events and the pure rules of intake, correction and the care-team registry."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from shared import idempotence
from shared.errors import Conflict, Unprocessable
from shared.events import TOPIC_ADMISSIONS, EventType, Role
from shared.fhir.encounter import PatientIdentity, Referent
from shared.idempotence import check_replay, fingerprint  # noqa: F401 - the domain's vocabulary
from shared.routing import Recipient

# Relais' own code system for care-team participant roles (the ANS "Cercle de soins" roles we use).
CARETEAM_ROLE_SYSTEM = "https://relais.example.org/fhir/CodeSystem/careteam-role"
ROLE_REFERENT = "referent"  # référent MSP, the team's single point of contact ("guichet unique")
ROLE_MEDECIN_TRAITANT = "medecin-traitant"
ROLE_MEMBER = "member"
ROLE_DISPLAY = {
    ROLE_REFERENT: "Référent de l'équipe traitante",
    ROLE_MEDECIN_TRAITANT: "Médecin traitant",
    ROLE_MEMBER: "Membre de l'équipe traitante",
}

# Namespace of the deterministic ids Relais derives from a request message id (notifications, events).
_NAMESPACE = uuid.UUID("6f1c1a52-8f55-4b43-9d0f-3a4f7e0e2d11")

# Encounter.class codes (v3 ActCode) Relais takes as an admission: inpatient, day case, emergency.
ADMISSION_CLASSES = frozenset({"IMP", "ACUTE", "NONAC", "SS", "AMB", "EMER", "OBSENC"})
ADMISSION_STATUSES = frozenset({"arrived", "triaged", "in-progress", "onleave"})
# A cancellation may carry the encounter as the hospital now records it.
CANCELLATION_STATUSES = ADMISSION_STATUSES | {"cancelled", "entered-in-error"}


class AdmissionStatus:
    RECORDED = "recorded"
    CORRECTED = "corrected"
    CANCELLED = "cancelled"


# --- value objects ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class AdmissionFacts:
    """What an admission message says, extracted and validated; `resources` keep the FHIR for the team."""

    hospital_org_id: str  # the FINESS of the sending hospital
    encounter_key: str  # "system|value" of the Encounter identifier
    encounter_status: str
    encounter_class: str
    started_at: str
    patient: PatientIdentity
    birth_date: date | None
    postal_code: str | None
    commune: str | None
    referent: Referent | None
    has_reason: bool
    focus: dict[str, Any] = field(repr=False)
    resources: tuple[dict[str, Any], ...] = field(default=(), repr=False)
    # The fhir.resources models focus and resources were read from, validated at intake (same order).
    models: tuple[Any, ...] = field(default=(), repr=False, compare=False)


@dataclass(frozen=True)
class Participant:
    role: str
    member_system: str
    member_value: str
    member_display: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    telecom: tuple[dict[str, str], ...] = ()  # [{"system": "phone", "value": ...}]


# --- events (past tense) ----------------------------------------------------------------------------


@dataclass(frozen=True)
class PatientAdmitted:
    event: EventType
    admission_id: str
    patient_key: str
    hospital_org_id: str
    encounter_key: str
    started_at: str
    recipients: tuple[str, ...]

    topic = TOPIC_ADMISSIONS

    def data(self) -> dict[str, Any]:
        # Domain topics stay free of clinical detail: other services learn that, not why.
        return {
            "event": self.event.value,
            "admission_id": self.admission_id,
            "patient_key": self.patient_key,
            "hospital": self.hospital_org_id,
            "encounter": self.encounter_key,
            "started_at": self.started_at,
            "recipients": list(self.recipients),
        }


# --- rules --------------------------------------------------------------------------------------------


def derived_id(request_message_id: str, *parts: str) -> str:
    return idempotence.derived_id(_NAMESPACE, request_message_id, *parts)


def lifting_capacity(opposed_by: str | None, opposed_team: str | None, org_id: str, role: Role) -> str | None:
    """Why this caller may lift a standing opposition, or None: only whoever recorded it, or the treating team
    that held the patient when it was recorded. A link made since (an admission, an enrolment, a change of team)
    never carries that right (DESIGN §5)."""
    if opposed_by is not None and org_id == opposed_by:
        return "recorder"
    if role is Role.TEAM and opposed_team is not None and org_id == opposed_team:
        return "team-at-opposition"
    return None


def case_covers(referrer_role: str | None, case_hospital: str | None, case_encounter: str | None,
                hospital: str | None, encounter_key: str | None) -> bool:
    """A team's referral covers the patient; a hospital's covers that hospital's own stay only."""
    if referrer_role != Role.HOSPITAL.value:
        return True
    return hospital is not None and (case_hospital, case_encounter) == (hospital, encounter_key)


def correction_recipients(original: list[Recipient], event_type: EventType) -> list[Recipient]:
    """A correction or cancellation goes to the original's recipients, nobody else, at the same detail."""
    reason = f"{event_type.value}/original-recipient"
    return [Recipient(r.role, r.organisation_id, r.detail, r.topic, reason) for r in original]


def check_correction_target(original_status: str | None, encounter_key: str, event_type: EventType) -> None:
    if original_status is None:
        raise Unprocessable(
            f"no admission is known for encounter {encounter_key}: a {event_type.value} needs the original first",
            expression=["Encounter.identifier"],
        )
    if original_status == AdmissionStatus.CANCELLED:
        raise Conflict(
            f"the admission for encounter {encounter_key} was cancelled", expression=["Encounter.identifier"]
        )


def check_encounter_status(event_type: EventType, status: str) -> None:
    allowed = CANCELLATION_STATUSES if event_type is EventType.ADMISSION_CANCELLED else ADMISSION_STATUSES
    if status not in allowed:
        raise Unprocessable(
            f"Encounter.status {status!r} does not describe a current admission; expected one of "
            + ", ".join(sorted(allowed)),
            expression=["Encounter.status"],
        )


def check_encounter_class(code: str | None) -> str:
    if not code or code.upper() not in ADMISSION_CLASSES:
        raise Unprocessable(
            f"Encounter.class {code!r} is not an admission class; expected one of "
            + ", ".join(sorted(ADMISSION_CLASSES)),
            expression=["Encounter.class"],
        )
    return code.upper()


def same_admission(existing: Any, patient_key: str, facts: AdmissionFacts) -> bool:
    """An admission message repeating a recorded one (same patient, class and start): a copy, not a conflict."""
    return (
        existing.status == AdmissionStatus.RECORDED
        and existing.patient_key == patient_key
        and existing.encounter_class == facts.encounter_class
        and existing.started_at == facts.started_at
    )


def check_enrolment(participants: tuple[Participant, ...]) -> None:
    """A treating team names at most one current referent (its guichet unique); with none, the team's managing
    organisation is the contact (ANS Cercle de soins CareTeams often carry no such role)."""
    referents = [p for p in participants if p.role == ROLE_REFERENT and p.end is None]
    if len(referents) > 1:
        raise Unprocessable(
            f"a CareTeam names at most one current participant with role {ROLE_REFERENT!r}, got {len(referents)}",
            expression=["CareTeam.participant"],
        )
