"""Reading a discharge message: from the validated FHIR Bundle to DischargeFacts (no I/O, no state)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from services.discharge.commands import DischargeMessage, command_for
from services.discharge.domain import (
    COMPLEXITY_EXTENSION,
    COMPLEXITY_SYSTEM,
    HOSPITAL_REQUEST,
    DischargeFacts,
    FollowupPlanItem,
    HospitalReferent,
    PatientIdentity,
    check_encounter_status,
    criteria_from_condition,
    default_followups,
)
from shared.errors import Unprocessable
from shared.events import EventType
from shared.fhir.encounter import EncounterMessage, read_encounter_message
from shared.fhir.intake import MessageBundle, forwardable
from shared.fhir.models import CarePlan, Condition, DocumentReference, Encounter, Resource, to_json
from shared.idempotence import fingerprint, sender_message_id
from shared.minimise import GENERIC_FOLLOWUP, followup_code
from shared.validation import check_datetime, check_text

_SKIPPED_ACTIVITY_STATUSES = frozenset({"completed", "cancelled", "stopped", "entered-in-error"})
# The follow-up display column (300) and the default plan cap (RELAIS_DISCHARGE_MAX_FOLLOWUPS).
MAX_FOLLOWUP_DISPLAY = 300
DEFAULT_MAX_FOLLOWUPS = 50


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


def _letter(msg: MessageBundle) -> str | None:
    document = next(iter(msg.all_of(DocumentReference)), None)
    if document is None:
        return None
    for content in document.content or []:
        if content.attachment and content.attachment.url:
            return str(content.attachment.url)
    return f"DocumentReference/{document.id}" if document.id else None


def _followups(msg: MessageBundle, discharged_at: datetime, max_items: int) -> tuple[FollowupPlanItem, ...]:
    plans = msg.all_of(CarePlan)
    if not plans:
        return default_followups(discharged_at)
    # Each follow-up makes a row, timers and bus records: a plan of thousands is refused, not stored.
    if sum(len(plan.activity or []) for plan in plans) > max_items:
        raise Unprocessable(
            f"at most {max_items} CarePlan activities per discharge", expression=["CarePlan.activity"],
            issue_code="too-costly",
        )
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
            # Only Relais' follow-up value set is kept as the code; the hospital's own wording stays the display.
            known = (followup_code(c.system, c.code) for c in codings)
            code = next((c for c in known if c != GENERIC_FOLLOWUP), GENERIC_FOLLOWUP)
            display = (
                next((c.display for c in codings if c.display), None)
                or (detail.code.text if detail.code else None)
                or detail.description
                or next((c.code for c in codings if c.code), None)
                or code
            )
            check_text(display, f"{path}.detail.code.text", MAX_FOLLOWUP_DISPLAY)
            due = check_datetime(_aware(period.end, f"{path}.detail.scheduledPeriod.end"),
                                 f"{path}.detail.scheduledPeriod.end")
            items.append(FollowupPlanItem(code, display, due))
    return tuple(sorted(items, key=lambda item: item.due_at))


def _flags(msg: MessageBundle, encounter: Encounter) -> frozenset[str]:
    flags = _extension_flags(encounter)
    for plan in msg.all_of(CarePlan):
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
    for condition in msg.all_of(Condition):
        flags |= criteria_from_condition(_codings(condition.code) + _codings(condition.category or []))
    return frozenset(flags)


def _referent(read: EncounterMessage) -> HospitalReferent:
    # A discharge is never refused for want of a referent (docs/architecture.md): the handoff then names none.
    found = read.referent
    if found is None:
        return HospitalReferent(name=None, phone=None, mssante=None)
    return HospitalReferent(name=found.name, phone=found.phone, mssante=found.mssante, rpps=found.rpps)


def discharge_facts(
    msg: MessageBundle, event_type: EventType, caller_org_id: str, max_followups: int = DEFAULT_MAX_FOLLOWUPS
) -> DischargeFacts:
    """Validated facts of a discharge message; 403 for another hospital, 422 for what is missing.

    The hospital, caller, encounter key, patient identity (INS or local-only), referent and residence are read
    by the shared reader, as at admission.
    """
    read = read_encounter_message(msg, caller_org_id, tolerant_referent=True)
    encounter = read.encounter
    check_encounter_status(event_type, read.status)
    if encounter.period is None or encounter.period.end is None:
        raise Unprocessable(
            "the Encounter needs period.end, the discharge time", expression=["Encounter.period.end"]
        )
    # Deadlines are computed from it: a year 9999 discharge would overflow them.
    discharged_at = check_datetime(_aware(encounter.period.end, "Encounter.period.end"), "Encounter.period.end")
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
    forwarded = forwardable(msg)
    return DischargeFacts(
        hospital_org_id=read.hospital_org_id,
        encounter_key=read.encounter_key,
        encounter_status=read.status,
        started_at=started_at,
        discharged_at=discharged_at,
        disposition=disposition,
        patient=PatientIdentity(read.identity.system, read.identity.value),
        birth_date=read.birth_date,
        postal_code=read.residence.postal_code,
        commune=read.residence.commune,
        referent=_referent(read),
        letter=_letter(msg),
        followups=_followups(msg, discharged_at, max_followups),
        flags=_flags(msg, encounter),
        encounter=next(data for resource, data in forwarded if resource is encounter),
        resources=tuple(data for resource, data in forwarded if resource.get_resource_type() != "Encounter"),
    )


def discharge_command(
    msg: MessageBundle, caller_org_id: str, max_followups: int = DEFAULT_MAX_FOLLOWUPS
) -> DischargeMessage:
    """The command a discharge message asks for, with its facts read and the caller checked."""
    command = command_for(msg.event_type)
    return command(
        message_id=sender_message_id(caller_org_id, msg.message_id),
        fingerprint=fingerprint(msg.raw),
        event_type=msg.event_type,
        caller_org_id=caller_org_id,
        facts=discharge_facts(msg, msg.event_type, caller_org_id, max_followups),
        request_header=to_json(msg.header),
    )
