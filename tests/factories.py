"""Test message factories: realistic hospital admission/discharge messages as plain dict Bundles.

Every identifier carries a valid key (test INS-NIR, FINESS, RPPS) so the messages pass intake unless a
test breaks them on purpose. All arguments are optional; ids default to fresh UUIDs.
"""

from __future__ import annotations

import json
import uuid
from typing import Any, Literal

from shared.events import DAVINCI_EVENT_SYSTEM, TRE_R254_SYSTEM
from shared.identifiers import FINESS, INS_NIR_TEST, RPPS, make_finess, make_nir, make_rpps

V3_ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
CONDITION_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
ENCOUNTER_CLASS_DISPLAY = {"IMP": "inpatient encounter", "AMB": "ambulatory", "EMER": "emergency"}

DEFAULT_NIR = make_nir(2, 55, 3, "75", 114, 27)
DEFAULT_FINESS = make_finess("75071218")  # 750712184
DEFAULT_RPPS = make_rpps("1000123456")
HOSPITAL_ENDPOINT = "https://dpi.chu-exemple.fr/fhir"

ADMIT = (TRE_R254_SYSTEM, "ADM")
DISCHARGE = (TRE_R254_SYSTEM, "SOR")
DAVINCI_ADMIT = (DAVINCI_EVENT_SYSTEM, "notification-admit")
DAVINCI_DISCHARGE = (DAVINCI_EVENT_SYSTEM, "notification-discharge")


def new_id() -> str:
    return str(uuid.uuid4())


def patient(
    *,
    patient_id: str | None = None,
    nir: str = DEFAULT_NIR,
    nir_system: str = INS_NIR_TEST,
    birth_date: str = "1955-03-14",
    gender: str = "female",
    postal_code: str = "75014",
    city: str = "Paris",
) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": patient_id or new_id(),
        "identifier": [
            {
                "use": "official",
                "type": {"coding": [{"system": V2_0203, "code": "NI"}]},
                "system": nir_system,
                "value": nir,
            }
        ],
        "name": [{"use": "official", "family": "MARTIN", "given": ["Jeanne"]}],
        "gender": gender,
        "birthDate": birth_date,
        "address": [{"postalCode": postal_code, "city": city, "country": "FR"}],
    }


def hospital(*, org_id: str | None = None, finess: str = DEFAULT_FINESS, name: str = "CHU Exemple") -> dict:
    return {
        "resourceType": "Organization",
        "id": org_id or new_id(),
        "identifier": [{"system": FINESS, "value": finess}],
        "name": name,
    }


def practitioner(*, practitioner_id: str | None = None, rpps: str = DEFAULT_RPPS) -> dict[str, Any]:
    return {
        "resourceType": "Practitioner",
        "id": practitioner_id or new_id(),
        "identifier": [{"system": RPPS, "value": rpps}],
        "name": [{"family": "DURAND", "given": ["Paul"], "prefix": ["Dr"]}],
    }


def referent_role(
    *,
    role_id: str | None = None,
    practitioner_ref: str,
    organization_ref: str,
    phone: str = "+33 1 23 45 67 89",
    mssante: str = "paul.durand@chu-exemple.mssante.fr",
) -> dict[str, Any]:
    """The hospital referent (référent hospitalier), reachable by phone and MSSanté secure mail."""
    return {
        "resourceType": "PractitionerRole",
        "id": role_id or new_id(),
        "active": True,
        "practitioner": {"reference": practitioner_ref},
        "organization": {"reference": organization_ref},
        "code": [{"text": "Référent hospitalier"}],
        "telecom": [
            {"system": "phone", "value": phone, "use": "work"},
            {"system": "email", "value": mssante, "use": "work"},
        ],
    }


def condition(
    *,
    condition_id: str | None = None,
    patient_ref: str,
    encounter_ref: str,
    code: str = "E11",
    display: str = "Diabète sucré de type 2",
    system: str = ICD10,
) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": condition_id or new_id(),
        "clinicalStatus": {"coding": [{"system": CONDITION_CLINICAL, "code": "active"}]},
        "code": {"coding": [{"system": system, "code": code, "display": display}]},
        "subject": {"reference": patient_ref},
        "encounter": {"reference": encounter_ref},
    }


def encounter(
    *,
    encounter_id: str | None = None,
    patient_ref: str,
    organization_ref: str,
    status: str = "in-progress",
    encounter_class: Literal["IMP", "AMB", "EMER"] | str = "IMP",
    nda: str = "NDA-2024-000123",
    finess: str = DEFAULT_FINESS,
    start: str = "2024-05-02T08:30:00+02:00",
    end: str | None = None,
    referent_ref: str | None = None,
    discharge_disposition: str | None = None,
) -> dict[str, Any]:
    """An Encounter with an NDA-like identifier (FR Core style, local system of the hospital)."""
    period: dict[str, str] = {"start": start}
    if end:
        period["end"] = end
    resource: dict[str, Any] = {
        "resourceType": "Encounter",
        "id": encounter_id or new_id(),
        "identifier": [
            {
                "type": {"coding": [{"system": V2_0203, "code": "VN"}]},
                "system": f"https://hopital.example.org/{finess}/nda",
                "value": nda,
            }
        ],
        "status": status,
        "class": {
            "system": V3_ACT_CODE,
            "code": encounter_class,
            "display": ENCOUNTER_CLASS_DISPLAY.get(encounter_class, encounter_class),
        },
        "subject": {"reference": patient_ref},
        "period": period,
        "serviceProvider": {"reference": organization_ref},
    }
    if referent_ref:
        resource["participant"] = [{"individual": {"reference": referent_ref}}]
    if discharge_disposition:
        resource["hospitalization"] = {"dischargeDisposition": {"text": discharge_disposition}}
    return resource


def _ref(resource: dict[str, Any], style: str) -> str:
    if style == "urn":
        return f"urn:uuid:{resource['id']}"
    return f"{resource['resourceType']}/{resource['id']}"


def admission_message(
    *,
    message_id: str | None = None,
    event: tuple[str, str] = ADMIT,
    event_system: str | None = None,
    event_code: str | None = None,
    finess: str = DEFAULT_FINESS,
    nir: str = DEFAULT_NIR,
    nir_system: str = INS_NIR_TEST,
    patient_id: str | None = None,
    encounter_id: str | None = None,
    encounter_status: str = "in-progress",
    encounter_class: str = "IMP",
    start: str = "2024-05-02T08:30:00+02:00",
    end: str | None = None,
    include_referent: bool = True,
    conditions: list[tuple[str, str]] | None = None,
    postal_code: str = "75014",
    birth_date: str = "1955-03-14",
    reference_style: Literal["relative", "urn"] = "relative",
    timestamp: str = "2024-05-02T08:35:00+02:00",
    source_endpoint: str = HOSPITAL_ENDPOINT,
) -> dict[str, Any]:
    """A hospital admission message Bundle (ANS TRE_R254 ADM by default).

    conditions: (ICD-10 code, display) pairs; each becomes a Condition on the encounter.
    reference_style: "relative" (Type/id) or "urn" (urn:uuid: fullUrls) references inside the Bundle.
    """
    system = event_system or event[0]
    code = event_code or event[1]
    pat = patient(
        patient_id=patient_id, nir=nir, nir_system=nir_system, postal_code=postal_code, birth_date=birth_date
    )
    org = hospital(finess=finess)
    resources: list[dict[str, Any]] = [pat, org]
    referent_ref = None
    if include_referent:
        prac = practitioner()
        role = referent_role(
            practitioner_ref=_ref(prac, reference_style), organization_ref=_ref(org, reference_style)
        )
        resources += [prac, role]
        referent_ref = _ref(role, reference_style)
    enc = encounter(
        encounter_id=encounter_id,
        patient_ref=_ref(pat, reference_style),
        organization_ref=_ref(org, reference_style),
        status=encounter_status,
        encounter_class=encounter_class,
        finess=finess,
        start=start,
        end=end,
        referent_ref=referent_ref,
        discharge_disposition="Retour à domicile" if end else None,
    )
    for cond_code, display in conditions or []:
        resources.append(
            condition(
                patient_ref=_ref(pat, reference_style),
                encounter_ref=_ref(enc, reference_style),
                code=cond_code,
                display=display,
            )
        )
    header = {
        "resourceType": "MessageHeader",
        "id": new_id(),
        "eventCoding": {"system": system, "code": code},
        "source": {"name": "DPI CHU Exemple", "endpoint": source_endpoint},
        "sender": {"reference": _ref(org, reference_style)},
        "focus": [{"reference": _ref(enc, reference_style)}],
    }
    entries = [header, enc, *resources]
    return {
        "resourceType": "Bundle",
        "id": message_id or new_id(),
        "type": "message",
        "timestamp": timestamp,
        "entry": [{"fullUrl": f"urn:uuid:{r['id']}", "resource": r} for r in entries],
    }


def discharge_message(
    *, event: tuple[str, str] = DISCHARGE, end: str = "2024-05-09T11:00:00+02:00", **kwargs: Any
) -> dict[str, Any]:
    """A hospital discharge message Bundle (ANS TRE_R254 SOR by default): Encounter finished with an end."""
    kwargs.setdefault("encounter_status", "finished")
    return admission_message(event=event, end=end, **kwargs)


def body(bundle: dict[str, Any]) -> bytes:
    """The bytes a client would POST."""
    return json.dumps(bundle, ensure_ascii=False).encode("utf-8")


# --- admissions registry: CareTeam (ANS "Cercle de soins"), Consent, $change-referent Parameters ---

CARETEAM_ROLE_SYSTEM = "https://relais.example.org/fhir/CodeSystem/careteam-role"


def careteam_resource(
    *,
    nir: str = DEFAULT_NIR,
    nir_system: str = INS_NIR_TEST,
    referent_rpps: str = DEFAULT_RPPS,
    referent_name: str = "Dr Claire PETIT",
    medecin_traitant_rpps: str | None = None,
    managing_org: str | None = None,
    postal_code: str | None = None,
) -> dict[str, Any]:
    """A treating team's enrolment of a patient: one team referent, optionally the médecin traitant, optionally
    the patient's postal code (a contained Patient), which places the patient in a territory."""

    def participant(code: str, rpps: str, display: str) -> dict[str, Any]:
        return {
            "role": [{"coding": [{"system": CARETEAM_ROLE_SYSTEM, "code": code}]}],
            "member": {"identifier": {"system": RPPS, "value": rpps}, "display": display},
        }

    participants = [participant("referent", referent_rpps, referent_name)]
    if medecin_traitant_rpps:
        participants.append(participant("medecin-traitant", medecin_traitant_rpps, "Dr Luc MOREAU"))
    resource: dict[str, Any] = {
        "resourceType": "CareTeam",
        "status": "active",
        "name": "MSP des Lilas",
        "subject": {"identifier": {"system": nir_system, "value": nir}},
        "participant": participants,
    }
    if managing_org:
        resource["managingOrganization"] = [{"identifier": {"value": managing_org}}]
    if postal_code:
        resource["contained"] = [{"resourceType": "Patient", "id": "pat", "address": [{"postalCode": postal_code}]}]
        resource["subject"]["reference"] = "#pat"
    return resource


def consent_resource(*, nir: str = DEFAULT_NIR, nir_system: str = INS_NIR_TEST, opposed: bool = True) -> dict:
    """The patient's opposition (deny) or agreement (permit) to sharing beyond the care team."""
    return {
        "resourceType": "Consent",
        "status": "active",
        "scope": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]
        },
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"identifier": {"system": nir_system, "value": nir}},
        "provision": {"type": "deny" if opposed else "permit"},
    }


def change_referent_parameters(*, rpps: str, name: str = "Dr Nadia BENALI") -> dict[str, Any]:
    return {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "referent", "valueReference": {"identifier": {"system": RPPS, "value": rpps}, "display": name}}
        ],
    }


# --- discharge: follow-up plan, liaison letter, complexity flags (added for the discharge service) ---

RELAIS_COMPLEXITY_SYSTEM = "https://relais.example.org/fhir/CodeSystem/complexity-criterion"
RELAIS_COMPLEXITY_EXTENSION = "https://relais.example.org/fhir/StructureDefinition/complexity-criterion"
RELAIS_FOLLOWUP_SYSTEM = "https://relais.example.org/fhir/CodeSystem/followup-activity"
LOINC = "http://loinc.org"
# PRADO-like plan: (code, display, delay after discharge in hours)
PRADO_PLAN: tuple[tuple[str, str, float], ...] = (
    ("nurse-visit", "Passage infirmier à domicile", 48.0),
    ("gp-visit", "Consultation du médecin traitant sous 7 jours", 7 * 24.0),
    ("specialist-visit", "Consultation du spécialiste à 1 mois", 30 * 24.0),
)


def _shift(instant: str, hours: float) -> str:
    from datetime import datetime, timedelta

    return (datetime.fromisoformat(instant) + timedelta(hours=hours)).isoformat()


def care_plan(
    *, patient_ref: str, encounter_ref: str, discharged_at: str,
    plan: tuple[tuple[str, str, float], ...] = PRADO_PLAN, complexity: tuple[str, ...] = (),
) -> dict[str, Any]:
    """The post-discharge follow-up plan: one activity per item, its due time in scheduledPeriod.end."""
    resource: dict[str, Any] = {
        "resourceType": "CarePlan",
        "id": new_id(),
        "status": "active",
        "intent": "plan",
        "title": "Plan de suivi de sortie",
        "subject": {"reference": patient_ref},
        "encounter": {"reference": encounter_ref},
        "activity": [
            {
                "detail": {
                    "status": "scheduled",
                    "code": {"coding": [{"system": RELAIS_FOLLOWUP_SYSTEM, "code": code, "display": display}]},
                    "scheduledPeriod": {"start": discharged_at, "end": _shift(discharged_at, hours)},
                }
            }
            for code, display, hours in plan
        ],
    }
    if complexity:
        resource["category"] = [{"coding": [{"system": RELAIS_COMPLEXITY_SYSTEM, "code": c} for c in complexity]}]
    return resource


def liaison_letter(
    *, patient_ref: str, url: str = "https://dpi.chu-exemple.fr/fhir/Binary/lettre-123"
) -> dict[str, Any]:
    return {
        "resourceType": "DocumentReference",
        "id": new_id(),
        "status": "current",
        "type": {"coding": [{"system": LOINC, "code": "34133-9", "display": "Summary of episode note"}]},
        "subject": {"reference": patient_ref},
        "content": [{"attachment": {"contentType": "application/pdf", "url": url, "title": "Lettre de liaison"}}],
    }


def full_discharge_message(
    *,
    end: str = "2024-05-09T11:00:00+02:00",
    plan: tuple[tuple[str, str, float], ...] | None = PRADO_PLAN,
    complexity: tuple[str, ...] = (),
    dac_request: bool = False,
    letter: bool = True,
    nda: str | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """A discharge with its follow-up plan (CarePlan), liaison letter and complexity flags.

    plan=None sends no CarePlan (the service then applies its default GP visit within 7 days);
    complexity: criterion codes put on the CarePlan category; dac_request: the hospital asks for the DAC.
    """
    bundle = discharge_message(end=end, **kwargs)
    resources = {e["resource"]["resourceType"]: e["resource"] for e in bundle["entry"]}
    pat, enc = resources["Patient"], resources["Encounter"]
    pat_ref, enc_ref = f"Patient/{pat['id']}", f"Encounter/{enc['id']}"
    if nda:
        enc["identifier"][0]["value"] = nda
    extra: list[dict[str, Any]] = []
    if plan is not None:
        extra.append(
            care_plan(patient_ref=pat_ref, encounter_ref=enc_ref, discharged_at=end, plan=plan, complexity=complexity)
        )
    elif complexity:
        enc.setdefault("extension", []).extend({"url": RELAIS_COMPLEXITY_EXTENSION, "valueCode": c} for c in complexity)
    if dac_request:
        enc.setdefault("extension", []).append({"url": RELAIS_COMPLEXITY_EXTENSION, "valueCode": "hospital-request"})
    if letter:
        extra.append(liaison_letter(patient_ref=pat_ref))
    bundle["entry"].extend({"fullUrl": f"urn:uuid:{r['id']}", "resource": r} for r in extra)
    return bundle
