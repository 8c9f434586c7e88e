"""Reading a discharge message: from the validated FHIR Bundle to DischargeFacts (no I/O, no state)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from services.discharge.domain import (
    COMPLEXITY_EXTENSION,
    COMPLEXITY_SYSTEM,
    FOLLOWUP_SYSTEM,
    HOSPITAL_REQUEST,
    DischargeFacts,
    FollowupPlanItem,
    HospitalReferent,
    PatientIdentity,
    check_encounter_status,
    criteria_from_condition,
    default_followups,
)
from shared.errors import BadRequest, Unprocessable
from shared.events import EventType
from shared.fhir.intake import MessageBundle, usable_commune, usable_postal_code
from shared.fhir.models import Resource, to_json
from shared.identifiers import FINESS, INS_SYSTEMS, RPPS, validate_identifier

_SKIPPED_ACTIVITY_STATUSES = frozenset({"completed", "cancelled", "stopped", "entered-in-error"})


def _aware(value: Any, path: str) -> datetime:
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        raise Unprocessable(f"{path} needs a time with its time zone, got a date", expression=[path])
    else:
        try:
            moment = datetime.fromisoformat(str(value))
        except ValueError as exc:
            raise Unprocessable(f"{path} is not a dateTime", expression=[path]) from exc
    if moment.tzinfo is None:
        raise Unprocessable(f"{path} needs a time zone", expression=[path])
    return moment


def _ref(reference: Any) -> str | None:
    return getattr(reference, "reference", None) if reference is not None else None


def _codings(concepts: Any) -> list[tuple[str | None, str | None]]:
    items = concepts if isinstance(concepts, list) else [concepts]
    return [(c.system, c.code) for concept in items if concept is not None for c in (concept.coding or [])]


def _extension_flags(resource: Resource | None) -> set[str]:
    flags: set[str] = set()
    for ext in getattr(resource, "extension", None) or []:
        if ext.url != COMPLEXITY_EXTENSION:
            continue
        code = ext.valueCode or (ext.valueCoding.code if ext.valueCoding else None)
        if ext.valueBoolean is True:
            code = HOSPITAL_REQUEST  # a bare "true" is the hospital asking for the DAC
        if code:
            flags.add(code.strip().lower())
    return flags


def _patient(msg: MessageBundle, encounter: Resource) -> tuple[PatientIdentity, Resource]:
    patient = msg.resource(_ref(encounter.subject)) or msg.first("Patient")
    if patient is None or patient.get_resource_type() != "Patient":
        raise Unprocessable(
            "the discharge needs the Patient in the Bundle (Encounter.subject)", expression=["Patient"]
        )
    for identifier in patient.identifier or []:
        if identifier.system in INS_SYSTEMS:
            value = validate_identifier(identifier.system, identifier.value)
            return PatientIdentity(identifier.system, value), patient
    raise Unprocessable(
        "the Patient needs an INS identifier (INS-NIR " + ", ".join(sorted(INS_SYSTEMS)) + ")",
        expression=["Patient.identifier"],
    )


def _hospital(msg: MessageBundle, encounter: Resource) -> str:
    org = msg.resource(_ref(msg.header.sender)) or msg.resource(_ref(encounter.serviceProvider))
    if org is None or org.get_resource_type() != "Organization":
        raise Unprocessable(
            "the discharge needs the hospital Organization in the Bundle (MessageHeader.sender)",
            expression=["MessageHeader.sender"],
        )
    for identifier in org.identifier or []:
        if identifier.system == FINESS:
            return validate_identifier(FINESS, identifier.value)
    raise Unprocessable(
        "the hospital Organization needs a FINESS identifier", expression=["Organization.identifier"]
    )


def _referent(msg: MessageBundle, encounter: Resource) -> HospitalReferent:
    role = None
    for participant in encounter.participant or []:
        found = msg.resource(_ref(participant.individual))
        if found is not None and found.get_resource_type() == "PractitionerRole":
            role = found
            break
    role = role or msg.first("PractitionerRole")
    if role is None:
        raise Unprocessable(
            "the discharge needs the hospital referent as a PractitionerRole (Encounter.participant)",
            expression=["Encounter.participant"],
        )
    phone = next((t.value for t in role.telecom or [] if t.system == "phone"), None)
    mail = next((t.value for t in role.telecom or [] if t.system == "email"), None)
    if not phone and not mail:
        raise Unprocessable(
            "the hospital referent needs a phone or an MSSanté address",
            expression=["PractitionerRole.telecom"],
        )
    practitioner = msg.resource(_ref(role.practitioner))
    name, rpps = None, None
    if practitioner is not None and practitioner.get_resource_type() == "Practitioner":
        for identifier in practitioner.identifier or []:
            if identifier.system == RPPS:
                rpps = validate_identifier(RPPS, identifier.value)
        if practitioner.name:
            human = practitioner.name[0]
            name = " ".join([*(human.prefix or []), *(human.given or []), human.family or ""]).strip() or None
    return HospitalReferent(name=name, phone=phone, mssante=mail, rpps=rpps)


def _letter(msg: MessageBundle) -> str | None:
    document = msg.first("DocumentReference")
    if document is None:
        return None
    for content in document.content or []:
        if content.attachment and content.attachment.url:
            return content.attachment.url
    return f"DocumentReference/{document.id}" if document.id else None


def _followups(msg: MessageBundle, discharged_at: datetime) -> tuple[FollowupPlanItem, ...]:
    plans = msg.all("CarePlan")
    if not plans:
        return default_followups(discharged_at)
    items: list[FollowupPlanItem] = []
    for p, plan in enumerate(plans):
        for a, activity in enumerate(plan.activity or []):
            path = f"CarePlan[{p}].activity[{a}]"
            detail = activity.detail
            if detail is None:
                raise Unprocessable(
                    f"{path} needs a detail (references are not supported)", expression=[path]
                )
            if detail.status in _SKIPPED_ACTIVITY_STATUSES:
                continue
            period = detail.scheduledPeriod
            if period is None or period.end is None:
                raise Unprocessable(
                    f"{path}.detail.scheduledPeriod.end is required: it is the follow-up's due time",
                    expression=[f"{path}.detail.scheduledPeriod.end"],
                )
            codings = (detail.code.coding or []) if detail.code else []
            code = next((c.code for c in codings if c.system == FOLLOWUP_SYSTEM and c.code), None)
            code = code or next((c.code for c in codings if c.code), None) or "followup"
            display = (
                next((c.display for c in codings if c.display), None)
                or (detail.code.text if detail.code else None)
                or detail.description
                or code
            )
            items.append(
                FollowupPlanItem(code, display, _aware(period.end, f"{path}.detail.scheduledPeriod.end"))
            )
    return tuple(sorted(items, key=lambda item: item.due_at))


def _flags(msg: MessageBundle, encounter: Resource) -> frozenset[str]:
    flags = _extension_flags(encounter)
    for plan in msg.all("CarePlan"):
        flags |= _extension_flags(plan)
        flags |= {
            code.lower()
            for system, code in _codings(plan.category or [])
            if system == COMPLEXITY_SYSTEM and code
        }
    flags |= {
        code.lower()
        for system, code in _codings(encounter.type or [])
        if system == COMPLEXITY_SYSTEM and code
    }
    for condition in msg.all("Condition"):
        flags |= criteria_from_condition(_codings(condition.code) + _codings(condition.category or []))
    return frozenset(flags)


def discharge_facts(msg: MessageBundle, event_type: EventType) -> DischargeFacts:
    """Validated facts of a discharge message, or the 422 that says what is missing."""
    encounter = next((r for r in msg.focus if r.get_resource_type() == "Encounter"), None)
    if encounter is None:
        raise Unprocessable(
            "a discharge message focuses on the Encounter", expression=["MessageHeader.focus"]
        )
    check_encounter_status(event_type, encounter.status)
    identifier = next((i for i in encounter.identifier or [] if i.system and i.value), None)
    if identifier is None:
        raise Unprocessable(
            "the Encounter needs an identifier (system and value)", expression=["Encounter.identifier"]
        )
    if encounter.period is None or encounter.period.end is None:
        raise Unprocessable(
            "the Encounter needs period.end, the discharge time", expression=["Encounter.period.end"]
        )
    discharged_at = _aware(encounter.period.end, "Encounter.period.end")
    started_at = _aware(encounter.period.start, "Encounter.period.start") if encounter.period.start else None
    disposition_concept = (
        encounter.hospitalization.dischargeDisposition if encounter.hospitalization else None
    )
    if disposition_concept is None and event_type is not EventType.DISCHARGE_CANCELLED:
        raise Unprocessable(
            "the Encounter needs hospitalization.dischargeDisposition (where the patient goes)",
            expression=["Encounter.hospitalization.dischargeDisposition"],
        )
    disposition = ""
    if disposition_concept is not None:
        codes = [c.code for c in disposition_concept.coding or [] if c.code]
        disposition = disposition_concept.text or (codes[0] if codes else "")
    patient_identity, patient = _patient(msg, encounter)
    address = (patient.address or [None])[0]
    birth = patient.birthDate if isinstance(patient.birthDate, date) else None
    if isinstance(birth, datetime):
        birth = birth.date()
    hospital = _hospital(msg, encounter)
    if not identifier.system:
        raise BadRequest("Encounter.identifier needs a system", expression=["Encounter.identifier"])
    return DischargeFacts(
        hospital_org_id=hospital,
        encounter_key=f"{identifier.system}|{identifier.value}",
        encounter_status=encounter.status,
        started_at=started_at,
        discharged_at=discharged_at,
        disposition=disposition,
        patient=patient_identity,
        birth_date=birth,
        postal_code=usable_postal_code(address.postalCode if address else None),
        commune=usable_commune(address.city if address else None),
        referent=_referent(msg, encounter),
        letter=_letter(msg),
        followups=_followups(msg, discharged_at),
        flags=_flags(msg, encounter),
        encounter=to_json(encounter),
        resources=tuple(
            to_json(e.resource)
            for e in msg.bundle.entry[1:]
            if e.resource is not None and e.resource.get_resource_type() != "Encounter"
        ),
    )
