"""The one reader of a hospital's encounter message: admissions, discharge, and later the NdE and HL7 v2 doors.

The rules, the same at every door (docs/architecture.md#reading-hospital-messages):
- Hospital: `Encounter.serviceProvider` when it names an Organization with a FINESS; else `MessageHeader.sender`;
  else the only Organization with a FINESS in the Bundle. So a message relayed by an integration engine
  (sender = the engine, serviceProvider = the hospital) is read as the hospital's. The caller must be that
  hospital (403 otherwise): an engine posts with the credential of the hospital it relays for.
- Patient: the Patient `Encounter.subject` points at, in the Bundle. An INS (INS-NIR, test INS-NIR, INS-NIA)
  wins, validated (key checked) and normalised; else the first local identifier (system and value), accepted
  and flagged `local_only`: consent cannot be checked for such a patient, so routing keeps it to the care team.
- Encounter key: "system|value" of the first Encounter.identifier with both (e.g. the NDA).
- Referent: the PractitionerRole of `Encounter.participant`, else the first in the Bundle; optional, but one
  that is named needs a phone or an MSSanté address.
- Residence: the home (else first current) address: postal code, commune code (reference list), country.
  Birth date when complete.
What differs per service (statuses, classes, dates, follow-up plans) stays in the service.
The NdE door (an nde-eventdeclaration CommunicationRequest) comes here too: `shared.fhir.nde` turns a declaration
into the equivalent message, which this reader then reads like any other.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

from shared.errors import Conflict, Forbidden, Unprocessable
from shared.fhir.intake import MessageBundle, usable_postal_code
from shared.fhir.models import (
    Address,
    Encounter,
    HumanName,
    Identifier,
    Organization,
    Patient,
    Practitioner,
    PractitionerRole,
    Reference,
    Resource,
)
from shared.fhir.outcome import issue
from shared.identifiers import FINESS, INS_NIR, INS_NIR_TEST, INS_SYSTEMS, RPPS, validate_identifier
from shared.minimise import commune_code
from shared.validation import check_date, check_text

__all__ = [
    "EncounterMessage",
    "PatientIdentity",
    "Referent",
    "Residence",
    "check_caller",
    "check_same_patient",
    "hospital_finess",
    "is_france",
    "local_only_issue",
    "patient_identity",
    "read_encounter_message",
]

R = TypeVar("R", bound=Resource)

# Preference when a Patient carries several INS: the production INS-NIR, the test one, then the NIA.
_INS_ORDER = {INS_NIR: 0, INS_NIR_TEST: 1}


# Column sizes every service shares (encounter_key 300; discharge stores patient system 100 and value 40).
MAX_ENCOUNTER_KEY = 300
MAX_IDENTIFIER_SYSTEM = 100
MAX_IDENTIFIER_VALUE = 40

@dataclass(frozen=True)
class PatientIdentity:
    system: str
    value: str  # normalised (validated when the system is known)

    @property
    def local_only(self) -> bool:
        """True for a hospital's local identifier: no national identity, so no consent can be looked up."""
        return self.system not in INS_SYSTEMS


@dataclass(frozen=True)
class Referent:
    """The hospital referent to call: a PractitionerRole with a phone or an MSSanté address."""

    name: str | None
    phone: str | None
    mssante: str | None
    rpps: str | None = None


@dataclass(frozen=True)
class Residence:
    postal_code: str | None
    commune: str | None  # INSEE code from the reference list, derived from the postal code; never the city text
    country: str | None


@dataclass(frozen=True)
class EncounterMessage:
    """What every door reads the same way from a hospital's encounter message."""

    hospital_org_id: str  # FINESS of the hospital responsible for the encounter
    encounter: Encounter
    encounter_key: str  # "system|value" of the Encounter identifier
    status: str  # Encounter.status (1..1 in FHIR; each service checks which it takes)
    patient: Patient
    identity: PatientIdentity
    birth_date: date | None
    residence: Residence
    referent: Referent | None


def _bundled(msg: MessageBundle, reference: Reference | None, cls: type[R]) -> R | None:
    found = msg.resource(reference.reference) if reference is not None else None
    return found if isinstance(found, cls) else None


def _finess_in(identifiers: list[Identifier] | None) -> str | None:
    for identifier in identifiers or []:
        if identifier.system == FINESS and identifier.value:
            return validate_identifier(FINESS, identifier.value)
    return None


def _finess_of(msg: MessageBundle, reference: Reference | None) -> str | None:
    """The FINESS of the Organization a reference names (bundled, or a logical reference), else None."""
    if reference is None:
        return None
    org = _bundled(msg, reference, Organization)
    if org is not None:
        return _finess_in(org.identifier)
    return _finess_in([reference.identifier] if reference.identifier is not None else None)


def hospital_finess(msg: MessageBundle, encounter: Encounter) -> str:
    """The hospital's FINESS: serviceProvider, else sender, else the only Organization with a FINESS."""
    for reference in (encounter.serviceProvider, msg.header.sender):
        finess = _finess_of(msg, reference)
        if finess is not None:
            return finess
    organisations = [org for org in msg.all("Organization") if isinstance(org, Organization)]
    candidates = {finess for org in organisations if (finess := _finess_in(org.identifier))}
    if len(candidates) == 1:
        return candidates.pop()
    raise Unprocessable(
        "name the hospital: Encounter.serviceProvider (or MessageHeader.sender) must point at an Organization "
        "with a FINESS identifier",
        expression=["Encounter.serviceProvider"],
    )


def check_caller(hospital_org_id: str, caller_org_id: str) -> None:
    """The caller must be the hospital the message is for (an engine relays with the hospital's credential)."""
    if hospital_org_id != caller_org_id:
        raise Forbidden(
            f"the message is for hospital FINESS {hospital_org_id}, but your organisation is {caller_org_id}",
            expression=["Encounter.serviceProvider"],
        )


def local_only_issue() -> dict[str, Any]:
    """The warning a hospital gets when it names the patient by a local identifier only (no INS)."""
    return issue(
        "warning",
        "informational",
        "the patient is named by a local identifier only (no INS): consent cannot be checked, so this event is "
        "shared with the care team only (no CPTS or DAC notice); send the INS to share it beyond the team",
        ["Patient.identifier"],
    )


def check_same_patient(original_patient_key: str, correction_patient_key: str) -> None:
    """A correction or cancellation must name the original's patient: it never moves data to another patient."""
    if original_patient_key != correction_patient_key:
        raise Conflict(
            "this correction names another patient than the original message for this encounter; a correction "
            "cannot change the patient: cancel the original (naming its patient) and send a new message for the "
            "right patient",
            expression=["Encounter.subject"],
        )


def patient_identity(identifiers: list[Identifier] | None, where: str) -> PatientIdentity:
    """An INS if there is one (validated, normalised), else the first local identifier (flagged local-only)."""
    usable = [i for i in identifiers or [] if i.system and i.value and i.use != "old"]
    national = sorted((i for i in usable if i.system in INS_SYSTEMS), key=lambda i: _INS_ORDER.get(i.system or "", 2))
    chosen = national[0] if national else (usable[0] if usable else None)
    if chosen is None or chosen.system is None:
        raise Unprocessable(
            f"{where} needs an identifier with system and value (INS-NIR or local)", expression=[where]
        )
    # Bounded here, the one reader, to the narrowest column any service stores them in (no 500 on PostgreSQL).
    check_text(chosen.system, f"{where}.system", MAX_IDENTIFIER_SYSTEM)
    value = validate_identifier(chosen.system, chosen.value)
    check_text(value, f"{where}.value", MAX_IDENTIFIER_VALUE)
    return PatientIdentity(chosen.system, value)


def _birth_date(value: Any) -> date | None:
    # A partial date ("1955", "1955-03") stays a string in the model: too vague for an age band.
    if isinstance(value, datetime):
        value = value.date()
    if not isinstance(value, date):
        return None
    # A birth date in the future (or before 1870) would make every age computation wrong or overflow.
    return check_date(value, "Patient.birthDate", not_future=True)


# How senders write France in Address.country: ISO 3166 alpha-2/alpha-3/numeric, the name, the INSEE code (99100),
# and the overseas departments' own ISO codes (their 97x postal codes are French postal codes).
_FRANCE = frozenset(
    {"fr", "fra", "250", "france", "99100", "république française", "republique francaise"}
    | {"gp", "glp", "mq", "mtq", "gf", "guf", "re", "reu", "yt", "myt"}
)


def is_france(country: str | None) -> bool:
    """True when Address.country is absent (a French deployment's default) or names France."""
    return country is None or country.strip().lower() in _FRANCE


def _residence(patient: Patient) -> Residence:
    addresses: list[Address] = [a for a in patient.address or [] if a.use != "old"]
    address = next((a for a in addresses if a.use == "home"), addresses[0] if addresses else None)
    if address is None:
        return Residence(None, None, None)
    country = address.country.strip() if address.country else None
    # A foreign address's code is not a French postal code (a US ZIP looks like one): never routed on.
    postal_code = usable_postal_code(address.postalCode) if is_france(country) else None
    return Residence(
        postal_code=postal_code,
        commune=commune_code(postal_code, address.city),
        country=country,
    )


def _name(human: HumanName) -> str | None:
    if human.text:
        return human.text
    parts = [*(human.prefix or []), *(human.given or []), human.family]
    return " ".join(part for part in parts if part).strip() or None


def _reach(msg: MessageBundle, person: PractitionerRole | Practitioner) -> Referent | None:
    """The referent a PractitionerRole or a Practitioner (attending with a secure e-mail) gives, if reachable."""
    role = person if isinstance(person, PractitionerRole) else None
    practitioner = _bundled(msg, role.practitioner, Practitioner) if role is not None else person
    telecom = [*(person.telecom or []), *((practitioner.telecom or []) if practitioner is not None else [])]
    phone = next((t.value for t in telecom if t.system == "phone" and t.value), None)
    mail = next((t.value for t in telecom if t.system == "email" and t.value), None)
    if not phone and not mail:
        return None
    name, rpps = None, None
    if isinstance(practitioner, Practitioner):
        name = _name(practitioner.name[0]) if practitioner.name else None
        for identifier in practitioner.identifier or []:
            if identifier.system == RPPS and identifier.value:
                rpps = validate_identifier(RPPS, identifier.value)
    return Referent(name=name, phone=phone, mssante=mail, rpps=rpps)


def _referent(msg: MessageBundle, encounter: Encounter, *, tolerant: bool) -> Referent | None:
    """The Encounter's participants first (PractitionerRole or Practitioner), else the Bundle's PractitionerRole.

    A named PractitionerRole nobody can reach is refused (422) unless `tolerant`: a discharge is never refused
    for want of a referent (docs/architecture.md), its handoff then comes from the hospital organisation.
    """
    named: list[PractitionerRole | Practitioner] = []
    for participant in encounter.participant or []:
        found = msg.resource(participant.individual.reference) if participant.individual else None
        if isinstance(found, PractitionerRole | Practitioner):
            named.append(found)
    candidates = named + [r for r in msg.all_of(PractitionerRole)[:1] if not any(r is n for n in named)]
    for candidate in candidates:
        if (referent := _reach(msg, candidate)) is not None:
            return referent
    if not tolerant and any(isinstance(c, PractitionerRole) for c in candidates):
        raise Unprocessable(
            "the hospital referent (PractitionerRole) needs a phone or an MSSanté address",
            expression=["PractitionerRole.telecom"],
        )
    return None


# A planned stay may be announced ahead of time, never by more than this.
MAX_DAYS_AHEAD = 366


def check_message_dates(msg: MessageBundle, encounter: Encounter, today: date | None = None) -> None:
    """The stay's dates and the message's timestamp are real dates: from 1870 to a year from today (422)."""
    latest = (today or datetime.now(UTC).date()) + timedelta(days=MAX_DAYS_AHEAD)
    period = encounter.period
    for name, value in (("start", period.start if period else None), ("end", period.end if period else None)):
        if value is not None:
            check_date(value, f"Encounter.period.{name}", latest=latest)
    if msg.bundle.timestamp is not None:
        check_date(msg.bundle.timestamp, "Bundle.timestamp", latest=latest)


def focus_encounter(msg: MessageBundle) -> Encounter:
    encounter = next((r for r in msg.focus if isinstance(r, Encounter)), None)
    if encounter is None:  # the kernel checks the focus type; kept for a clear message if that changes
        raise Unprocessable("the MessageHeader.focus must be the Encounter", expression=["MessageHeader.focus"])
    return encounter


def read_encounter_message(
    msg: MessageBundle, caller_org_id: str, *, tolerant_referent: bool = False
) -> EncounterMessage:
    """The shared facts of a hospital's encounter message; 403 for another hospital, 422 for what is missing.

    `tolerant_referent`: an unreachable referent is read as none instead of refused (the discharge door).
    """
    encounter = focus_encounter(msg)
    hospital = hospital_finess(msg, encounter)
    check_caller(hospital, caller_org_id)
    key = next((i for i in encounter.identifier or [] if i.system and i.value), None)
    if key is None:
        raise Unprocessable(
            "Encounter.identifier (system and value, e.g. the NDA) is required to match corrections",
            expression=["Encounter.identifier"],
        )
    check_text(f"{key.system}|{key.value}", "Encounter.identifier", MAX_ENCOUNTER_KEY)
    check_message_dates(msg, encounter)
    if not encounter.status:
        raise Unprocessable("Encounter.status is required", expression=["Encounter.status"])
    patient = _bundled(msg, encounter.subject, Patient)
    if patient is None:
        raise Unprocessable(
            "Encounter.subject must point at the Patient in the Bundle", expression=["Encounter.subject"]
        )
    return EncounterMessage(
        hospital_org_id=hospital,
        encounter=encounter,
        encounter_key=f"{key.system}|{key.value}",
        status=encounter.status,
        patient=patient,
        identity=patient_identity(patient.identifier, "Patient.identifier"),
        birth_date=_birth_date(patient.birthDate),
        residence=_residence(patient),
        referent=_referent(msg, encounter, tolerant=tolerant_referent),
    )
