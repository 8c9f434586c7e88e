"""The FHIR resources the demo's actors send: hospital messages, enrolments, SNP agendas and requests."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from relais.demo.territory import Commune, Organisation, Person, Territory
from shared.clock import instant
from shared.identifiers import FINESS, INS_NIR_TEST, RPPS

TRE_R254 = "https://mos.esante.gouv.fr/NOS/TRE_R254-TypeEvenement/FHIR/TRE-R254-TypeEvenement"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
V3_ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
CONDITION_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
CARETEAM_ROLE = "https://relais.example.org/fhir/CodeSystem/careteam-role"
INSEE_COMMUNE = "https://relais.example.org/fhir/NamingSystem/insee-commune"
SNP_URGENCY = "https://relais.example.org/fhir/CodeSystem/snp-urgency"
SNP_REASON = "https://relais.example.org/fhir/CodeSystem/snp-reason-category"
TASK_CODE_SYSTEM = "https://relais.example.org/fhir/CodeSystem/task-code"
FOLLOWUP_ACTIVITY = "https://relais.example.org/fhir/CodeSystem/followup-activity"
FHIR_JSON = "application/fhir+json"


def _id() -> str:
    return str(uuid.uuid4())


def _entry(resource: dict[str, Any]) -> dict[str, Any]:
    return {"fullUrl": f"urn:uuid:{resource['id']}", "resource": resource}


def _patient_identifier(person: Person) -> dict[str, Any]:
    return {"system": INS_NIR_TEST, "value": person.nir}


def _reference(resource: dict[str, Any]) -> dict[str, str]:
    return {"reference": f"{resource['resourceType']}/{resource['id']}"}


def _patient(person: Person) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": _id(),
        "identifier": [
            {"use": "official", "type": {"coding": [{"system": V2_0203, "code": "NI"}]}, **_patient_identifier(person)}
        ],
        "name": [{"use": "official", "family": person.family, "given": [person.given]}],
        "gender": "male" if person.sex == 1 else "female",
        "birthDate": person.birth_date.isoformat(),
        "address": [{"postalCode": person.commune.postal_code, "city": person.commune.name, "country": "FR"}],
    }


def _hospital_parties(territory: Territory) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The hospital (Organization), its referent (Practitioner) and the referent's PractitionerRole."""
    hospital = territory.org("hospital")
    referent = territory.referents["hospital"]
    organization = {
        "resourceType": "Organization",
        "id": _id(),
        "identifier": [{"system": FINESS, "value": hospital.id}],
        "name": hospital.name,
    }
    practitioner = {
        "resourceType": "Practitioner",
        "id": _id(),
        "identifier": [{"system": RPPS, "value": referent.rpps}],
        "name": [{"family": referent.family, "given": [referent.given], "prefix": ["Dr"]}],
    }
    role = {
        "resourceType": "PractitionerRole",
        "id": _id(),
        "active": True,
        "practitioner": _reference(practitioner),
        "organization": _reference(organization),
        "code": [{"text": "Référent hospitalier"}],
        "telecom": [{"system": "phone", "value": referent.phone, "use": "work"}],
    }
    return organization, practitioner, role


def _encounter(
    hospital_id: str, parties: tuple[dict[str, Any], ...], nda: str, start: datetime, end: datetime | None
) -> dict[str, Any]:
    patient, organization, role = parties
    period = {"start": instant(start), **({"end": instant(end)} if end else {})}
    encounter: dict[str, Any] = {
        "resourceType": "Encounter",
        "id": _id(),
        "identifier": [
            {
                "type": {"coding": [{"system": V2_0203, "code": "VN"}]},
                "system": f"https://dpi.ch-ouest-vosgien.example/{hospital_id}/nda",
                "value": nda,
            }
        ],
        "status": "finished" if end else "in-progress",
        "class": {"system": V3_ACT_CODE, "code": "IMP", "display": "inpatient encounter"},
        "subject": _reference(patient),
        "period": period,
        "serviceProvider": _reference(organization),
        "participant": [{"individual": _reference(role)}],
    }
    if end:
        encounter["hospitalization"] = {"dischargeDisposition": {"text": "Retour à domicile"}}
    return encounter


def _conditions(person: Person, patient: dict[str, Any], encounter: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "resourceType": "Condition",
            "id": _id(),
            "clinicalStatus": {"coding": [{"system": CONDITION_CLINICAL, "code": "active"}]},
            "code": {"coding": [{"system": ICD10, "code": code, "display": display}]},
            "subject": _reference(patient),
            "encounter": _reference(encounter),
        }
        for code, display in person.conditions
    ]


def _care_plan(patient: dict[str, Any], encounter: dict[str, Any], end: datetime) -> dict[str, Any]:
    """The discharge's follow-up plan: a nurse visit within 2 days, the GP within 7."""
    return {
        "resourceType": "CarePlan",
        "id": _id(),
        "status": "active",
        "intent": "plan",
        "title": "Plan de suivi de sortie",
        "subject": _reference(patient),
        "encounter": _reference(encounter),
        "activity": [
            {
                "detail": {
                    "status": "scheduled",
                    "code": {"coding": [{"system": FOLLOWUP_ACTIVITY, "code": code, "display": display}]},
                    "scheduledPeriod": {"start": instant(end), "end": instant(end + delay)},
                }
            }
            for code, display, delay in (
                ("nurse-visit", "Passage infirmier à domicile", timedelta(days=2)),
                ("gp-visit", "Consultation du médecin traitant sous 7 jours", timedelta(days=7)),
            )
        ],
    }


def hospital_message(
    territory: Territory,
    person: Person,
    *,
    event: str,
    nda: str,
    start: datetime,
    end: datetime | None = None,
    message_id: str | None = None,
    care_plan: bool = False,
) -> dict[str, Any]:
    """An ADM (admission) or SOR (discharge) message Bundle from the Centre hospitalier de l'Ouest vosgien."""
    patient = _patient(person)
    organization, practitioner, role = _hospital_parties(territory)
    encounter = _encounter(territory.org("hospital").id, (patient, organization, role), nda, start, end)
    conditions = _conditions(person, patient, encounter)
    extra = [_care_plan(patient, encounter, end)] if end and care_plan else []
    header = {
        "resourceType": "MessageHeader",
        "id": _id(),
        "eventCoding": {"system": TRE_R254, "code": event},
        "source": {"name": "DPI CH Ouest vosgien", "endpoint": "https://dpi.ch-ouest-vosgien.example/fhir"},
        "sender": _reference(organization),
        "focus": [_reference(encounter)],
    }
    resources = [header, encounter, patient, organization, practitioner, role, *conditions, *extra]
    return {
        "resourceType": "Bundle",
        "id": message_id or _id(),
        "type": "message",
        "timestamp": instant(end or start),
        "entry": [_entry(r) for r in resources],
    }


def careteam(territory: Territory, person: Person) -> dict[str, Any]:
    """The treating team enrols its patient (ANS Cercle de soins), with its team referent."""
    team = territory.org(person.team or "")
    referent = territory.referents[team.key]
    return {
        "resourceType": "CareTeam",
        "status": "active",
        "name": team.name,
        "contained": [
            {
                "resourceType": "Patient",
                "id": "patient",
                "identifier": [_patient_identifier(person)],
                "address": [{"postalCode": person.commune.postal_code, "city": person.commune.name}],
            }
        ],
        "subject": {"identifier": _patient_identifier(person)},
        "participant": [
            {
                "role": [{"coding": [{"system": CARETEAM_ROLE, "code": "referent"}]}],
                "member": {
                    "identifier": {"system": RPPS, "value": referent.rpps},
                    "display": f"Dr {referent.given} {referent.family}",
                },
            }
        ],
        "managingOrganization": [{"identifier": {"value": team.id}}],
    }


def availability(team: Organisation, commune: Commune, starts: list[datetime], run_tag: str) -> dict[str, Any]:
    """A transaction Bundle: the effecteur's SNP agenda in its commune and its free slots."""
    agenda = f"agenda-{team.key}"
    entries: list[dict[str, Any]] = [
        {
            "resource": {
                "resourceType": "Schedule",
                "id": agenda,
                "active": True,
                "actor": [{"type": "Location", "identifier": {"system": INSEE_COMMUNE, "value": commune.insee}}],
            }
        }
    ]
    for index, start in enumerate(starts):
        entries.append(
            {
                "resource": {
                    "resourceType": "Slot",
                    "id": f"snp-{run_tag}-{index}",
                    "meta": {"security": [{"code": "SNP"}]},
                    "schedule": {"reference": f"Schedule/{agenda}"},
                    "status": "free",
                    "start": instant(start),
                    "end": instant(start + timedelta(minutes=20)),
                }
            }
        )
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def service_request(person: Person, commune: Commune, identifier: str, urgency: str, reason: str) -> dict:
    return {
        "resourceType": "ServiceRequest",
        "status": "active",
        "intent": "order",
        "identifier": [{"system": "https://sas.example/vosges/demande", "value": identifier}],
        "category": [{"coding": [{"system": SNP_URGENCY, "code": urgency}]}],
        "reasonCode": [{"coding": [{"system": SNP_REASON, "code": reason}]}],
        "subject": {"identifier": _patient_identifier(person)},
        "locationCode": [{"coding": [{"system": INSEE_COMMUNE, "code": commune.insee}]}],
    }
