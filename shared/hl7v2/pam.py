"""IHE PAM France (2.11) ADT messages read into the FHIR message the FHIR door reads.

Why an adapter and not a second reader (as for NdE): the v2 message becomes the equivalent message Bundle (a
MessageHeader with the event, the Encounter of the stay, the Patient, the hospital's Organization), which then goes
through `parse_message_bundle` and the shared reader like any hospital message. An A01 is thus the same
`RecordAdmission` the FHIR door builds, routed the same way (team, CPTS, DAC), and an A03 the same discharge.

What each trigger does is one table (TRIGGERS, documented in docs/hl7v2.md). Identity follows PID-32: the INS of
PID-3 identifies the patient only when the identity is qualified (VALI); else the hospital's PI identifier does,
and the patient stays local to that hospital.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from enum import StrEnum
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from shared.errors import Unprocessable
from shared.events import RELAIS_EVENT_SYSTEM, TRE_R254_SYSTEM
from shared.hl7v2.message import Hl7Message
from shared.identifiers import FINESS, INS_NIR, INS_NIR_TEST

__all__ = ["DISCHARGE_ACTIONS", "TRIGGERS", "Action", "Hl7Facts", "message_bundle", "read_facts"]


class Action(StrEnum):
    ADMIT = "admit"  # admission.recorded (TRE_R254 ADM)
    MOVE = "move"  # admission.corrected; the first Relais hears of a stay is recorded as its admission
    CANCEL_ADMIT = "cancel-admit"  # admission.cancelled, to the admission's recipients
    DISCHARGE = "discharge"  # discharge.recorded (TRE_R254 SOR)
    REVISE_ADMIT = "revise-admit"  # an update of an admission or movement (A08/Z99)
    REVISE_DISCHARGE = "revise-discharge"  # an update of the discharge (Z99 naming A03 in ZBE-6)
    CANCEL_DISCHARGE = "cancel-discharge"  # discharge.cancelled, to the discharge's recipients
    UPDATE = "update"  # A08/Z99: a correction of the movement ZBE-6 names; of an unknown stay, nothing
    NONE = "none"  # understood, nothing to route: AA


DISCHARGE_ACTIONS = frozenset({Action.DISCHARGE, Action.REVISE_DISCHARGE, Action.CANCEL_DISCHARGE})

# trigger -> (action, what Relais does), the table of docs/hl7v2.md.
TRIGGERS: dict[str, tuple[Action, str]] = {
    "A01": (Action.ADMIT, "admission: routed like a FHIR ADM (team full; CPTS minimised without team; DAC if open)"),
    "A04": (Action.ADMIT, "registration (outpatient, emergency): routed like an admission"),
    "A05": (Action.NONE, "pre-admission: acknowledged, nothing routed (no planned-stay event yet)"),
    "A02": (Action.MOVE, "transfer: a correction of the admission, to its recipients"),
    "A06": (Action.MOVE, "change outpatient to inpatient: a correction of the admission"),
    "A07": (Action.MOVE, "change inpatient to outpatient: a correction of the admission"),
    "A03": (Action.DISCHARGE, "discharge: routed like a FHIR SOR (handoff, CPTS orientation, DAC)"),
    "A11": (Action.CANCEL_ADMIT, "cancel admission: retracted from the admission's recipients; AE if unknown"),
    "A12": (Action.MOVE, "cancel transfer: the admission corrected back, to its recipients; AE if unknown"),
    "A13": (Action.CANCEL_DISCHARGE, "cancel discharge: retracted from the discharge's recipients; AE if unknown"),
    "A38": (Action.NONE, "cancel pre-admission: nothing was routed for it"),
    "A08": (Action.UPDATE, "update: a correction of the stay to its recipients; nothing if Relais never had it"),
    "Z99": (Action.UPDATE, "PAM France movement update: as A08, for the movement ZBE-6 names"),
    "A21": (Action.NONE, "leave of absence: acknowledged, nothing routed"),
    "A22": (Action.NONE, "return from leave: acknowledged, nothing routed"),
    "A52": (Action.NONE, "cancel leave of absence: nothing was routed for it"),
    "A53": (Action.NONE, "cancel return from leave: nothing was routed for it"),
    "A28": (Action.NONE, "new identity: acknowledged (Relais keeps no demographic file)"),
    "A31": (Action.NONE, "identity update: acknowledged"),
    "A40": (Action.NONE, "merge: acknowledged (propagation to earlier recipients not yet done)"),
    "A47": (Action.NONE, "identifier change: acknowledged (propagation not yet done)"),
    "A44": (Action.NONE, "account move: acknowledged"),
    "A54": (Action.NONE, "attending doctor change: acknowledged"),
    "A55": (Action.NONE, "cancel attending doctor change: acknowledged"),
}

_EVENT_CODES: dict[Action, tuple[str, str]] = {
    Action.ADMIT: (TRE_R254_SYSTEM, "ADM"),
    Action.MOVE: (RELAIS_EVENT_SYSTEM, "revise-admit"),
    Action.CANCEL_ADMIT: (RELAIS_EVENT_SYSTEM, "cancel-admit"),
    Action.DISCHARGE: (TRE_R254_SYSTEM, "SOR"),
    Action.REVISE_ADMIT: (RELAIS_EVENT_SYSTEM, "revise-admit"),
    Action.REVISE_DISCHARGE: (RELAIS_EVENT_SYSTEM, "revise-discharge"),
    Action.CANCEL_DISCHARGE: (RELAIS_EVENT_SYSTEM, "cancel-discharge"),
}
# PV1-2 (patient class, PAM France) to the Encounter class the FHIR door takes.
_CLASSES = {"I": "IMP", "O": "AMB", "E": "EMER", "R": "AMB"}
_CLASS_DISPLAYS = {"IMP": "inpatient encounter", "AMB": "ambulatory", "EMER": "emergency"}
_GENDERS = {"M": "male", "F": "female", "U": "unknown", "O": "other", "A": "other", "I": "unknown"}
# PID-32 statuses under which PAM France lets the INS identify the patient beyond the hospital.
QUALIFIED_IDENTITY = frozenset({"VALI"})
_INS_AUTHORITIES = {"1.2.250.1.213.1.4.8": INS_NIR, "1.2.250.1.213.1.4.10": INS_NIR_TEST}
LOCAL_SYSTEM_BASE = "https://relais.example.org/hl7v2/id/"
NOT_STATED = "non précisé (HL7 v2)"
PARIS = ZoneInfo("Europe/Paris")
_ID_NAMESPACE = uuid.UUID("5b1f0e3a-7c2d-4e8f-9a1b-3c4d5e6f7a8b")
V3_ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
# PV2-9, the expected discharge date, as R4 can carry it: the R5 element Encounter.plannedEndDate as an extension.
PLANNED_END = "http://hl7.org/fhir/5.0/StructureDefinition/extension-Encounter.plannedEndDate"

# Which v2 field each FHIR path of the equivalent message came from: an error names the field (ERR-2).
FIELD_OF = {
    "Patient.identifier": "PID-3",
    "Encounter.subject": "PID-3",
    "Encounter.identifier": "PID-18",
    "Encounter.period.start": "ZBE-2",
    "Encounter.period.end": "PV1-45",
    "Encounter.class": "PV1-2",
    "Encounter.status": "MSH-9",
    "Patient.birthDate": "PID-7",
    "Encounter.serviceProvider": "MSH-4",
    "Bundle.entry[0].resource.eventCoding": "MSH-9",
}


@dataclass(frozen=True)
class Hl7Facts:
    """What the door needs besides the Bundle: the action, and the movement ZBE-6 names (for updates)."""

    trigger: str
    action: Action
    original_trigger: str  # ZBE-6 (the movement a CANCEL or UPDATE is about)
    identity_status: str  # PID-32


def hl7_instant(value: str, field: str) -> str | None:
    """An HL7 TS (YYYYMMDD[HHMM[SS[.S]]][+/-ZZZZ]) as a FHIR instant; local times are in Europe/Paris."""
    if not value:
        return None
    digits, offset = value, None
    for sign in ("+", "-"):
        if sign in value[8:]:
            digits, _, offset = value.rpartition(sign)
            offset = sign + offset
    digits = digits.split(".", 1)[0]
    try:
        moment = datetime.strptime(digits.ljust(14, "0")[:14], "%Y%m%d%H%M%S")
        if offset and len(offset) == 5:
            minutes = int(offset[1:3]) * 60 + int(offset[3:5])
            zone = timezone(timedelta(minutes=minutes if offset[0] == "+" else -minutes))
            moment = moment.replace(tzinfo=zone)
        else:
            moment = moment.replace(tzinfo=PARIS)
    except ValueError:
        raise Unprocessable(f"{field} is not an HL7 date and time", expression=[field]) from None
    return moment.isoformat()


def read_facts(msg: Hl7Message) -> Hl7Facts:
    zbe = msg.segment("ZBE")
    trigger = msg.header.trigger.upper()
    action = TRIGGERS.get(trigger, (Action.NONE, ""))[0]
    return Hl7Facts(trigger, action, msg.value(zbe, 6).upper(), msg.value(msg.segment("PID"), 32).upper())


def _authority(msg: Hl7Message, segment: Any, field: int, rep: int) -> str:
    """A URI for the assigning authority of a CX (CX-4): its OID when it is one, else a Relais system."""
    universal, kind = msg.value(segment, field, rep, 4, 2), msg.value(segment, field, rep, 4, 3)
    if universal and kind.upper() == "ISO":
        return f"urn:oid:{universal}"
    namespace = msg.value(segment, field, rep, 4, 1)
    return LOCAL_SYSTEM_BASE + quote(f"{namespace}-{universal}".strip("-") or "local", safe="")


def _patient_identifiers(msg: Hl7Message, facts: Hl7Facts) -> list[dict[str, Any]]:
    pid = msg.segment("PID")
    found: list[dict[str, Any]] = []
    for rep in range(1, 11):  # PID-3 repetitions: a PAM message has two or three
        value, kind = msg.value(pid, 3, rep, 1), msg.value(pid, 3, rep, 5).upper()
        if not value:
            break
        authority = msg.value(pid, 3, rep, 4, 2)
        if kind == "INS":
            # The INS names the patient only when the identity is qualified (PID-32 VALI); else it is not sent on.
            if authority in _INS_AUTHORITIES and facts.identity_status in QUALIFIED_IDENTITY:
                found.insert(0, {"system": _INS_AUTHORITIES[authority], "value": value})
        elif kind == "PI":
            found.append({"system": _authority(msg, pid, 3, rep), "value": value})
    return found


def _patient(msg: Hl7Message, facts: Hl7Facts) -> dict[str, Any]:
    pid = msg.segment("PID")
    patient: dict[str, Any] = {"resourceType": "Patient", "id": "patient"}
    identifiers = _patient_identifiers(msg, facts)
    if identifiers:
        patient["identifier"] = identifiers
    family, given = msg.value(pid, 5, 1, 1), msg.value(pid, 5, 1, 2)
    if family or given:
        patient["name"] = [{k: v for k, v in (("family", family), ("given", [given] if given else None)) if v}]
    if gender := _GENDERS.get(msg.value(pid, 8).upper()):
        patient["gender"] = gender
    birth = msg.value(pid, 7)
    if len(birth) >= 8 and birth[:8].isdigit():
        patient["birthDate"] = f"{birth[:4]}-{birth[4:6]}-{birth[6:8]}"
    for rep in range(1, 6):  # the home address (XAD-7 H), else the first
        kind = msg.value(pid, 11, rep, 7).upper()
        if kind in ("H", "") and (postal := msg.value(pid, 11, rep, 5)):
            address = {"postalCode": postal, "city": msg.value(pid, 11, rep, 3), "country": msg.value(pid, 11, rep, 6)}
            patient["address"] = [{k: v for k, v in address.items() if v}]
            break
    return patient


def _encounter_key(msg: Hl7Message) -> dict[str, str] | None:
    pid, pv1 = msg.segment("PID"), msg.segment("PV1")
    if value := msg.value(pid, 18, 1, 1):
        return {"system": _authority(msg, pid, 18, 1), "value": value}
    if value := msg.value(pv1, 19, 1, 1):
        return {"system": _authority(msg, pv1, 19, 1), "value": value}
    return None


def _period(msg: Hl7Message, action: Action) -> dict[str, str]:
    evn, pv1, zbe = msg.segment("EVN"), msg.segment("PV1"), msg.segment("ZBE")
    start = hl7_instant(msg.value(pv1, 44), "PV1-44") or hl7_instant(msg.value(zbe, 2), "ZBE-2")
    occurred = hl7_instant(msg.value(evn, 6), "EVN-6") or hl7_instant(msg.value(evn, 2), "EVN-2")
    period = {"start": start or occurred or ""}
    if action in DISCHARGE_ACTIONS:
        end = hl7_instant(msg.value(pv1, 45), "PV1-45") or hl7_instant(msg.value(zbe, 2), "ZBE-2") or occurred
        period["end"] = end or ""
    return {k: v for k, v in period.items() if v}


def _encounter(msg: Hl7Message, action: Action) -> dict[str, Any]:
    pv1 = msg.segment("PV1")
    status = {Action.CANCEL_ADMIT: "cancelled", **{a: "finished" for a in DISCHARGE_ACTIONS}}
    code = _CLASSES.get(msg.value(pv1, 2).upper(), "IMP")
    encounter: dict[str, Any] = {
        "resourceType": "Encounter",
        "id": "encounter",
        "status": status.get(action, "in-progress"),
        "class": {"system": V3_ACT_CODE, "code": code, "display": _CLASS_DISPLAYS[code]},
        "subject": {"reference": "Patient/patient"},
        "serviceProvider": {"reference": "Organization/hospital"},
    }
    if key := _encounter_key(msg):
        encounter["identifier"] = [key]
    if period := _period(msg, action):
        encounter["period"] = period
    expected = hl7_instant(msg.value(msg.segment("PV2"), 9), "PV2-9")
    if expected and action not in DISCHARGE_ACTIONS:
        encounter["extension"] = [{"url": PLANNED_END, "valueDateTime": expected}]
    if action in (Action.DISCHARGE, Action.REVISE_DISCHARGE):
        disposition = msg.value(pv1, 36)
        encounter["hospitalization"] = {"dischargeDisposition": {"text": disposition or NOT_STATED}}
    return encounter


def bundle_id(control_id: str) -> str:
    """A FHIR id for MSH-10 (any 199 characters): deterministic, so a resend is the same message."""
    return str(uuid.uuid5(_ID_NAMESPACE, control_id))


def message_bundle(msg: Hl7Message, facts: Hl7Facts, action: Action, hospital_finess: str) -> dict[str, Any]:
    """The FHIR message Bundle equivalent to this v2 message, for the hospital the sender is bound to."""
    system, code = _EVENT_CODES[action]
    header = msg.header
    resources = [
        {
            "resourceType": "MessageHeader",
            "id": "header",
            "eventCoding": {"system": system, "code": code},
            "source": {
                "name": header.sending_application or "HL7 v2",
                "endpoint": f"mllp:{quote(header.sending_facility)}",
            },
            "sender": {"reference": "Organization/hospital"},
            "focus": [{"reference": "Encounter/encounter"}],
        },
        _encounter(msg, action),
        _patient(msg, facts),
        {
            "resourceType": "Organization",
            "id": "hospital",
            "identifier": [{"system": FINESS, "value": hospital_finess}],
        },
    ]
    sent = hl7_instant(msg.value(msg.segment("MSH"), 7), "MSH-7")
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "id": bundle_id(header.control_id),
        "type": "message",
        "entry": [{"fullUrl": f"urn:uuid:{_entry_id(header.control_id, r['id'])}", "resource": r} for r in resources],
    }
    if sent:
        bundle["timestamp"] = sent
    return bundle


def _entry_id(control_id: str, local: str) -> str:
    return str(uuid.uuid5(_ID_NAMESPACE, hashlib.sha256(f"{control_id}|{local}".encode()).hexdigest()))
