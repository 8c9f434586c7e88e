"""The event catalogue: every event Relais carries, its topic, its FHIR focus and its intake codes."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from shared.errors import Unprocessable


class EventType(StrEnum):
    ADMISSION_RECORDED = "admission.recorded"
    ADMISSION_CORRECTED = "admission.corrected"
    ADMISSION_CANCELLED = "admission.cancelled"
    DISCHARGE_RECORDED = "discharge.recorded"
    DISCHARGE_CORRECTED = "discharge.corrected"
    DISCHARGE_CANCELLED = "discharge.cancelled"
    HANDOFF_PROPOSED = "handoff.proposed"
    HANDOFF_ACCEPTED = "handoff.accepted"
    HANDOFF_DECLINED = "handoff.declined"
    HANDOFF_EXPIRED = "handoff.expired"
    HANDOFF_CANCELLED = "handoff.cancelled"
    ORIENTATION_REQUESTED = "orientation.requested"
    ORIENTATION_ASSIGNED = "orientation.assigned"
    ORIENTATION_ACCEPTED = "orientation.accepted"
    ORIENTATION_RETURNED = "orientation.returned"
    FOLLOWUP_DUE = "followup.due"
    FOLLOWUP_MISSED = "followup.missed"
    SNP_REQUESTED = "snp.requested"
    SNP_OFFERED = "snp.offered"
    SNP_BOOKED = "snp.booked"
    SNP_FULFILLED = "snp.fulfilled"
    SNP_NOSHOW = "snp.noshow"
    SNP_EXPIRED = "snp.expired"
    SNP_CANCELLED = "snp.cancelled"
    CARETEAM_CHANGED = "careteam.changed"
    CARETEAM_ASSIGNED = "careteam.assigned"
    CARETEAM_CHANGE_REQUESTED = "careteam.change-requested"
    CARETEAM_EXPIRING = "careteam.expiring"
    TERRITORY_CHANGED = "territory.changed"
    NOTIFICATION_READ = "notification.read"


class Role(StrEnum):
    HOSPITAL = "hospital"
    TEAM = "team"
    CPTS = "cpts"
    DAC = "dac"
    SAS = "sas"
    ADMIN = "admin"


# Kafka topics. Domain topics are keyed by patient pseudonym, notify topics by recipient organisation.
TOPIC_ADMISSIONS = "relais.admissions"
TOPIC_DISCHARGE = "relais.discharge"
TOPIC_SNP = "relais.snp"
TOPIC_CARETEAM = "relais.careteam"
TOPIC_RECEIPTS = "relais.receipts"
# Registry updates other services ask admissions to make (keyed by patient pseudonym): admissions consumes it.
TOPIC_REGISTRY_UPDATES = "relais.registry.updates"
# HL7 v2 discharges the admissions-hosted MLLP door forwards to the discharge service (distributed mode).
TOPIC_HL7_DISCHARGE = "relais.mllp.discharge"
TOPIC_NOTIFY_TEAM = "relais.notify.team"
TOPIC_NOTIFY_CPTS = "relais.notify.cpts"
TOPIC_NOTIFY_DAC = "relais.notify.dac"


# --- Catalogue: what each event means, where it travels, what FHIR resource it is about ---

# Relais' own code system for MessageHeader.eventCoding: one code per EventType (its value), plus the
# MedCom-like correction/cancellation codes hospitals already know (revise-admit, cancel-discharge...).
RELAIS_EVENT_SYSTEM = "https://relais.example.org/fhir/CodeSystem/relais-event"
# ANS TRE_R254-TypeEvenement (NOS), as used by the ANS "Notification d'évènements" IG (ans.fhir.fr.nde);
# canonical URL and OID from the NOS CodeSystem definition. The code system is case-insensitive.
TRE_R254_SYSTEM = "https://mos.esante.gouv.fr/NOS/TRE_R254-TypeEvenement/FHIR/TRE-R254-TypeEvenement"
TRE_R254_OID = "urn:oid:1.2.250.1.213.1.1.4.337"
# Da Vinci Unsolicited Notifications IG (hl7.fhir.us.davinci-alerts)
DAVINCI_EVENT_SYSTEM = "http://hl7.org/fhir/us/davinci-alerts/CodeSystem/notification-event"


@dataclass(frozen=True)
class EventSpec:
    type: EventType
    description: str
    topic: str
    focus: tuple[str, ...]  # FHIR resource types MessageHeader.focus may point at, first is the usual one
    code: str  # code in RELAIS_EVENT_SYSTEM

    @property
    def system(self) -> str:
        return RELAIS_EVENT_SYSTEM


def _spec(event_type: EventType, description: str, topic: str, *focus: str) -> EventSpec:
    return EventSpec(event_type, description, topic, focus, event_type.value)


_E = EventType
CATALOGUE: dict[EventType, EventSpec] = {
    s.type: s
    for s in (
        _spec(_E.ADMISSION_RECORDED, "A hospital admitted the patient.", TOPIC_ADMISSIONS, "Encounter"),
        _spec(
            _E.ADMISSION_CORRECTED,
            "A hospital corrected an admission it sent.",
            TOPIC_ADMISSIONS,
            "Encounter",
        ),
        _spec(
            _E.ADMISSION_CANCELLED,
            "A hospital cancelled an admission sent in error.",
            TOPIC_ADMISSIONS,
            "Encounter",
        ),
        _spec(_E.DISCHARGE_RECORDED, "A hospital discharged the patient.", TOPIC_DISCHARGE, "Encounter"),
        _spec(
            _E.DISCHARGE_CORRECTED, "A hospital corrected a discharge it sent.", TOPIC_DISCHARGE, "Encounter"
        ),
        _spec(
            _E.DISCHARGE_CANCELLED,
            "A hospital cancelled a discharge sent in error.",
            TOPIC_DISCHARGE,
            "Encounter",
        ),
        _spec(
            _E.HANDOFF_PROPOSED,
            "The hospital referent proposed handing the patient to a team referent.",
            TOPIC_DISCHARGE,
            "Task",
        ),
        _spec(_E.HANDOFF_ACCEPTED, "The team referent accepted the handoff.", TOPIC_DISCHARGE, "Task"),
        _spec(_E.HANDOFF_DECLINED, "The team referent declined the handoff.", TOPIC_DISCHARGE, "Task"),
        _spec(_E.HANDOFF_EXPIRED, "Nobody answered the handoff before its deadline.", TOPIC_DISCHARGE, "Task"),
        _spec(_E.HANDOFF_CANCELLED, "The hospital withdrew the handoff.", TOPIC_DISCHARGE, "Task"),
        _spec(
            _E.ORIENTATION_REQUESTED,
            "A patient without a treating team waits for the CPTS to orient them.",
            TOPIC_DISCHARGE,
            "Task",
        ),
        _spec(_E.ORIENTATION_ASSIGNED, "The CPTS proposed a treating team for the patient.", TOPIC_DISCHARGE, "Task"),
        _spec(
            _E.ORIENTATION_ACCEPTED,
            "The proposed team accepted: it is now the patient's treating team.",
            TOPIC_DISCHARGE,
            "Task",
        ),
        _spec(
            _E.ORIENTATION_RETURNED,
            "The proposed team declined or did not answer: the orientation is back with the CPTS.",
            TOPIC_DISCHARGE,
            "Task",
        ),
        _spec(
            _E.FOLLOWUP_DUE, "A post-discharge follow-up action is due.", TOPIC_DISCHARGE, "Task", "CarePlan"
        ),
        _spec(
            _E.FOLLOWUP_MISSED,
            "A post-discharge follow-up deadline passed undone.",
            TOPIC_DISCHARGE,
            "Task",
            "CarePlan",
        ),
        _spec(
            _E.SNP_REQUESTED,
            "The SAS asked for an unscheduled-care appointment.",
            TOPIC_SNP,
            "ServiceRequest",
        ),
        _spec(
            _E.SNP_OFFERED,
            "An effecteur offered a slot for an SNP request.",
            TOPIC_SNP,
            "Appointment",
            "Slot",
        ),
        _spec(_E.SNP_BOOKED, "An SNP appointment was booked.", TOPIC_SNP, "Appointment"),
        _spec(_E.SNP_FULFILLED, "The patient was seen at the SNP appointment.", TOPIC_SNP, "Appointment"),
        _spec(_E.SNP_NOSHOW, "The patient did not come to the SNP appointment.", TOPIC_SNP, "Appointment"),
        _spec(_E.SNP_CANCELLED, "An SNP appointment was cancelled; its slot is free again.", TOPIC_SNP, "Appointment"),
        _spec(
            _E.SNP_EXPIRED,
            "No slot was found for an SNP request within its deadline.",
            TOPIC_SNP,
            "ServiceRequest",
        ),
        _spec(
            _E.CARETEAM_CHANGED, "The patient's care team or referent changed.", TOPIC_CARETEAM, "CareTeam"
        ),
        _spec(
            _E.CARETEAM_CHANGE_REQUESTED,
            "Another team asked to become the patient's treating team: the current team accepts or declines.",
            TOPIC_CARETEAM,
            "Task",
            "CareTeam",
        ),
        _spec(
            _E.CARETEAM_EXPIRING,
            "A patient of the team's list no upload confirmed lately: the patient leaves the list (and the team's "
            "care) at the CareTeam's period end unless a new upload confirms it.",
            TOPIC_CARETEAM,
            "CareTeam",
        ),
        _spec(
            _E.CARETEAM_ASSIGNED,
            "A team accepted the patient through orientation: the registry makes it the treating team.",
            TOPIC_REGISTRY_UPDATES,
            "CareTeam",
        ),
        _spec(
            _E.TERRITORY_CHANGED,
            "An administrator mapped a postal code to its CPTS and DAC.",
            TOPIC_CARETEAM,
            "Organization",
        ),
        _spec(
            _E.NOTIFICATION_READ,
            "A recipient acknowledged reading a notification.",
            TOPIC_RECEIPTS,
            "Communication",
        ),
    )
}
del _E


def spec(event_type: EventType | str) -> EventSpec:
    """The catalogue entry of an event type (accepts the string value too)."""
    return CATALOGUE[EventType(event_type)]


# Corrections and cancellations point at the event they amend (HL7 v2 A08/A11/A13 semantics).
CORRECTIONS: dict[EventType, EventType] = {
    EventType.ADMISSION_CORRECTED: EventType.ADMISSION_RECORDED,
    EventType.ADMISSION_CANCELLED: EventType.ADMISSION_RECORDED,
    EventType.DISCHARGE_CORRECTED: EventType.DISCHARGE_RECORDED,
    EventType.DISCHARGE_CANCELLED: EventType.DISCHARGE_RECORDED,
}

# MedCom-like correction codes under RELAIS_EVENT_SYSTEM, for senders mapping HL7 v2 A08/A11/A13.
RELAIS_CORRECTION_CODES: dict[str, EventType] = {
    "revise-admit": EventType.ADMISSION_CORRECTED,
    "cancel-admit": EventType.ADMISSION_CANCELLED,
    "revise-discharge": EventType.DISCHARGE_CORRECTED,
    "cancel-discharge": EventType.DISCHARGE_CANCELLED,
}

# Every (system, code) accepted on intake as MessageHeader.eventCoding.
# notification-transfer is an in-stay move (HL7 v2 A02): for Relais it updates the known admission.
INTAKE_CODES: dict[tuple[str, str], EventType] = {
    (TRE_R254_SYSTEM, "ADM"): EventType.ADMISSION_RECORDED,
    (TRE_R254_SYSTEM, "SOR"): EventType.DISCHARGE_RECORDED,
    (DAVINCI_EVENT_SYSTEM, "notification-admit"): EventType.ADMISSION_RECORDED,
    (DAVINCI_EVENT_SYSTEM, "notification-discharge"): EventType.DISCHARGE_RECORDED,
    (DAVINCI_EVENT_SYSTEM, "notification-transfer"): EventType.ADMISSION_CORRECTED,
    **{(RELAIS_EVENT_SYSTEM, code): et for code, et in RELAIS_CORRECTION_CODES.items()},
    **{(RELAIS_EVENT_SYSTEM, s.code): s.type for s in CATALOGUE.values()},
}

# Systems spelled differently by some senders, mapped to the canonical URL.
_SYSTEM_ALIASES = {TRE_R254_OID: TRE_R254_SYSTEM}
_CASE_INSENSITIVE_SYSTEMS = frozenset({TRE_R254_SYSTEM})


def accepted_codes() -> list[str]:
    """Human-readable list of accepted `system|code` pairs, for error messages and docs."""
    return [f"{system}|{code}" for system, code in INTAKE_CODES]


def event_type_for(system: str | None, code: str | None) -> EventType:
    """The EventType for an intake eventCoding; unknown pairs are a 422 listing what is accepted."""
    canonical = _SYSTEM_ALIASES.get(system or "", system or "")
    key_code = (code or "").strip()
    if canonical in _CASE_INSENSITIVE_SYSTEMS:
        key_code = key_code.upper()
    found = INTAKE_CODES.get((canonical, key_code))
    if found is None:
        raise Unprocessable(
            f"Unsupported event {system or '(no system)'}|{code or '(no code)'}; accepted: "
            + ", ".join(accepted_codes()),
            issue_code="not-supported",
            expression=["Bundle.entry[0].resource.eventCoding"],
        )
    return found
