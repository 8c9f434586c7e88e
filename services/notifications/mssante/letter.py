"""What a mail says, read from a full-detail notification's FHIR message Bundle: the patient, the stay, the
hospital and its referent, the follow-ups and deadlines. Every value is cleaned and bounded here, once, so no
name can break a header, a file or a page (CR/LF and other control characters dropped, long values cut)."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.identifiers import FINESS, INS_NIR, INS_NIR_TEST

MAX_TEXT = 200
MAX_FOLLOWUPS = 20
INS_SYSTEMS = (INS_NIR, INS_NIR_TEST)

TITLES = {
    "admission.recorded": "Admission à l'hôpital",
    "admission.corrected": "Admission à l'hôpital (correction)",
    "admission.cancelled": "Admission annulée",
    "discharge.recorded": "Sortie d'hospitalisation",
    "discharge.corrected": "Sortie d'hospitalisation (correction)",
    "discharge.cancelled": "Sortie d'hospitalisation annulée",
    "handoff.proposed": "Relai proposé à votre équipe",
    "handoff.cancelled": "Relai annulé",
    "followup.due": "Suivi à réaliser",
    "followup.missed": "Suivi non réalisé",
}


def clean(value: Any, limit: int = MAX_TEXT) -> str:
    """One line of printable text: control and format characters become spaces, runs of spaces one, at most
    `limit` characters (a 10 MB name is cut before anything else reads it)."""
    if value is None:
        return ""
    text = str(value)[: limit * 4]
    chars = (" " if unicodedata.category(c).startswith("C") else c for c in text)
    line = " ".join("".join(chars).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


@dataclass(frozen=True)
class Followup:
    label: str
    due: str  # ISO instant or date, as the plan gave it; "" when the plan has none


@dataclass(frozen=True)
class Letter:
    notification_id: str
    event: str
    title: str
    sent_at: str
    family: str
    given: str
    birth_date: str
    gender: str
    ins_system: str
    ins_value: str
    hospital_name: str
    hospital_finess: str
    stay_start: str
    stay_end: str
    stay_number: str
    referent_name: str
    referent_phone: str
    referent_mail: str
    handoff_deadline: str
    followups: tuple[Followup, ...]

    @property
    def patient_name(self) -> str:
        return " ".join(part for part in (self.family.upper(), self.given) if part) or "Patient"


def _resources(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    entries = bundle.get("entry") if isinstance(bundle, dict) else None
    found = [e.get("resource") for e in entries or [] if isinstance(e, dict)]
    return [r for r in found if isinstance(r, dict)]


def _first(resources: Iterable[dict[str, Any]], kind: str) -> dict[str, Any]:
    return next((r for r in resources if r.get("resourceType") == kind), {})


def _ins(patient: dict[str, Any]) -> tuple[str, str]:
    for identifier in patient.get("identifier") or []:
        if isinstance(identifier, dict) and identifier.get("system") in INS_SYSTEMS:
            return clean(identifier["system"], 60), clean(identifier.get("value"), 30)
    return "", ""


def _name(resource: dict[str, Any]) -> tuple[str, str, str]:
    names = resource.get("name") or [{}]
    name = names[0] if isinstance(names, list) and isinstance(names[0], dict) else {}
    given = " ".join(str(g) for g in name.get("given") or [] if isinstance(g, str))
    prefix = " ".join(str(p) for p in name.get("prefix") or [] if isinstance(p, str))
    family = name.get("family") or name.get("text") or ""
    return clean(prefix, 40), clean(family, 100), clean(given, 100)


def _telecom(resource: dict[str, Any], system: str) -> str:
    for point in resource.get("telecom") or []:
        if isinstance(point, dict) and point.get("system") == system:
            return clean(point.get("value"), 120)
    return ""


def _task_input(task: dict[str, Any], name: str) -> Any:
    for item in task.get("input") or []:
        if isinstance(item, dict) and (item.get("type") or {}).get("text") == name:
            return item.get("valueString") or (item.get("valueContactPoint") or {}).get("value")
    return None


def _code_text(concept: Any) -> str:
    if not isinstance(concept, dict):
        return ""
    codings = [c for c in concept.get("coding") or [] if isinstance(c, dict)]
    return clean(concept.get("text") or next((c.get("display") or c.get("code") for c in codings), ""))


def _followups(resources: list[dict[str, Any]]) -> tuple[Followup, ...]:
    """The follow-up Tasks Relais planned (their deadlines), else the hospital's CarePlan activities."""
    tasks = [r for r in resources if r.get("resourceType") == "Task" and r.get("intent") == "plan"]
    items = [
        Followup(clean(t.get("description") or _code_text(t.get("code"))),
                 clean(((t.get("restriction") or {}).get("period") or {}).get("end"), 40))
        for t in tasks
    ]
    if not items:
        for plan in (r for r in resources if r.get("resourceType") == "CarePlan"):
            for activity in plan.get("activity") or []:
                detail = activity.get("detail") if isinstance(activity, dict) else None
                if isinstance(detail, dict):
                    due = (detail.get("scheduledPeriod") or {}).get("end")
                    items.append(Followup(_code_text(detail.get("code")), clean(due, 40)))
    return tuple(items[:MAX_FOLLOWUPS])


def read_letter(notification: dict[str, Any]) -> Letter:
    """The letter of one stored notification (the delivery body): never raises on a strange Bundle."""
    payload = notification.get("payload") if isinstance(notification.get("payload"), dict) else {}
    resources = _resources(payload or {})
    patient, encounter = _first(resources, "Patient"), _first(resources, "Encounter")
    hospital = _first(resources, "Organization")
    role = _first(resources, "PractitionerRole")
    _, family, given = _name(patient)
    prefix, ref_family, ref_given = _name(_first(resources, "Practitioner"))
    handoff = next((r for r in resources if r.get("resourceType") == "Task" and r.get("intent") == "order"), {})
    referent = " ".join(p for p in (prefix, ref_given, ref_family.upper()) if p) or clean(
        _task_input(handoff, "hospital-referent")
    )
    finess = next((clean(i.get("value"), 20) for i in hospital.get("identifier") or []
                   if isinstance(i, dict) and i.get("system") == FINESS), "")
    period = encounter.get("period") or {}
    numbers = [i for i in encounter.get("identifier") or [] if isinstance(i, dict)]
    system, value = _ins(patient) if patient else _task_patient(handoff)
    event = clean(notification.get("event"), 64)
    return Letter(
        notification_id=clean(notification.get("id"), 64),
        event=event,
        title=TITLES.get(event, "Notification Relais"),
        sent_at=clean(notification.get("sent_at"), 40),
        family=family,
        given=given,
        birth_date=clean(patient.get("birthDate"), 10),
        gender=clean(patient.get("gender"), 10),
        ins_system=system,
        ins_value=value,
        hospital_name=clean(hospital.get("name")) or finess or clean(notification.get("sender"), 100),
        hospital_finess=finess or clean(notification.get("sender"), 20),
        stay_start=clean(period.get("start"), 40),
        stay_end=clean(period.get("end"), 40),
        stay_number=clean(numbers[0].get("value"), 60) if numbers else "",
        referent_name=referent,
        referent_phone=_telecom(role, "phone") or clean(_task_input(handoff, "hospital-referent-phone"), 120),
        referent_mail=_telecom(role, "email") or clean(_task_input(handoff, "hospital-referent-mssante"), 120),
        handoff_deadline=clean(((handoff.get("restriction") or {}).get("period") or {}).get("end"), 40),
        followups=_followups(resources),
    )


def _task_patient(task: dict[str, Any]) -> tuple[str, str]:
    """A handoff notification names its patient only in the Task's `for` identifier."""
    identifier = (task.get("for") or {}).get("identifier") or {}
    if identifier.get("system") in INS_SYSTEMS:
        return clean(identifier["system"], 60), clean(identifier.get("value"), 30)
    return "", ""


def french_date(value: str, with_time: bool = False) -> str:
    """`2024-05-09T11:00:00+02:00` -> `09/05/2024` (or with its time); an unreadable value stays as it is."""
    if not value:
        return ""
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    text = moment.strftime("%d/%m/%Y")
    if with_time and "T" in value:
        zone = moment.strftime("%z")
        text += moment.strftime(" à %H:%M") + (" UTC" if zone == "+0000" else f" (UTC{zone[:3]}:{zone[3:]})")
    return text
