"""Discharge domain model: vocabulary, statuses, value objects and the policy. No I/O here."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from shared import idempotence
from shared.identifiers import ORGANISATION
from shared.minimise import FOLLOWUP_SYSTEM  # noqa: F401 - Relais' follow-up value set lives with the whitelist
from shared.routing import COMPLEXITY_CRITERIA

ADMISSIONS_ENDPOINT = "/admissions/fhir/$process-message"
RELAIS_BASE = "https://relais.example.org/fhir"
# Relais' code systems and extension for what hospitals send us beyond core FHIR.
COMPLEXITY_SYSTEM = f"{RELAIS_BASE}/CodeSystem/complexity-criterion"
COMPLEXITY_EXTENSION = f"{RELAIS_BASE}/StructureDefinition/complexity-criterion"
PATIENT_KEY_SYSTEM = f"{RELAIS_BASE}/NamingSystem/patient-key"
ORGANISATION_SYSTEM = ORGANISATION

HOSPITAL_REQUEST = "hospital-request"
READMISSION_30D = "readmission-30d"
READMISSION_WINDOW = timedelta(days=30)
# PRADO-like default when the hospital sends no plan: the médecin traitant sees the patient within 7 days.
DEFAULT_GP_VISIT = ("gp-visit", "Consultation du médecin traitant sous 7 jours", timedelta(days=7))

# Namespace of every deterministic id this service derives (notifications, tasks, timers).
_NAMESPACE = uuid.UUID("0b6a54c1-3f1e-4d52-9a9c-6d2f3a7c8e41")

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


class OrientationStatus:
    """FHIR Task.status values of the CPTS's orientation Task."""

    REQUESTED = "requested"  # waiting for the CPTS to propose a team
    IN_PROGRESS = "in-progress"  # a team was proposed and has not answered yet
    COMPLETED = "completed"  # the team accepted: it is the patient's treating team
    CANCELLED = "cancelled"  # the discharge was cancelled


class FollowupStatus:
    REQUESTED = "requested"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


class TimerKind:
    HANDOFF_EXPIRY = "handoff-expiry"
    FOLLOWUP_MISSED = "followup-missed"
    FOLLOWUP_REMINDER = "followup-reminder"


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


@dataclass(frozen=True)
class Policy:
    """The configurable parts of the rules: delays and criteria."""

    handoff_expiry: timedelta = timedelta(hours=48)
    followup_grace: timedelta = timedelta(hours=48)
    followup_reminder: timedelta = timedelta(hours=24)
    readmission_window: timedelta = READMISSION_WINDOW
    criteria: frozenset[str] = COMPLEXITY_CRITERIA
    source_endpoint: str = f"{RELAIS_BASE}/discharge"


def derived_id(source_id: str, *parts: str) -> str:
    return idempotence.derived_id(_NAMESPACE, source_id, *parts)


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
    dac_stays: tuple[tuple[str, str, str], ...] = ()  # (hospital, encounter, DAC) of each stay's case

    def stay_dac(self, hospital_org_id: str | None, encounter_key: str | None) -> str | None:
        """The DAC of the case that covers this stay, when its hospital referred it."""
        return next((d for h, e, d in self.dac_stays if (h, e) == (hospital_org_id, encounter_key)), None)


@dataclass(frozen=True)
class TerritoryState:
    cpts_org_id: str | None = None
    dac_org_id: str | None = None


def as_utc(value: datetime) -> datetime:
    """Aware UTC datetime (SQLite hands back naive values it stored as UTC)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def fhir_instant(value: datetime) -> str:
    return as_utc(value).isoformat(timespec="seconds").replace("+00:00", "Z")
