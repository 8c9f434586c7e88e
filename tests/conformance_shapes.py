"""Relais' own fixtures in the shapes of the published examples (docs/conformance.md): Da Vinci Unsolicited
Notifications message Bundles, ANS Cercle de soins CareTeams and creation transaction, Synthea transaction Bundles.

Written for Relais' tests (names, numbers and identifiers are made up); French identifiers are added the way
shared/conformance/README.md says: a test INS-NIR with a valid key and the sender's FINESS, nothing else changed.
"""

from __future__ import annotations

import copy
import uuid
from typing import Any

from shared.events import DAVINCI_EVENT_SYSTEM
from shared.identifiers import FINESS, INS_NIR, INS_NIR_TEST, make_finess
from tests import factories as f

TEST_NIR = "279035121518989"  # the ANS test patient's NIR (valid key)
IG_WRONG_KEY_NIR = "123456789012244"  # the Cercle de soins IG Patient's NIR: its key is wrong
INTERMEDIARY_FINESS = make_finess("75000004")
TRE_R259 = "https://mos.esante.gouv.fr/NOS/TRE_R259-HL7ParticipationFunction/FHIR/TRE-R259-HL7ParticipationFunction"
TRE_R260 = "https://mos.esante.gouv.fr/NOS/TRE_R260-HL7RoleClass/FHIR/TRE-R260-HL7RoleClass"
TRE_R216 = "https://mos.esante.gouv.fr/NOS/TRE_R216-HL7RoleCode/FHIR/TRE-R216-HL7RoleCode"
RELAIS_ROLE = "https://relais.example.org/fhir/CodeSystem/careteam-role"


def _uid() -> str:
    return str(uuid.uuid4())


def _entry(resource: dict[str, Any], full_url: str | None = None) -> dict[str, Any]:
    return {"fullUrl": full_url or f"urn:uuid:{resource['id']}", "resource": resource}


# --- Da Vinci Unsolicited Notifications ------------------------------------------------------------------


def davinci_message(
    event: str = "notification-admit",
    *,
    finess: str = f.DEFAULT_FINESS,
    french: bool = True,
    relayed: bool = False,
    attending: str = "practitioner-email",
    country: str = "FR",
    postal_code: str = "88800",
    start: str = "2024-03-01T08:00:00+01:00",
    end: str | None = None,
    message_id: str | None = None,
    nda: str = "NDA-DV-0001",
    full_urls_differ: bool = False,
) -> dict[str, Any]:
    """A Da Vinci notification Bundle: MessageHeader (author, responsible, sender), Encounter whose attending is
    a Practitioner with a secure e-mail, Patient, Location, hospital Organization, Condition, Coverage and payer;
    `relayed` adds the intermediary as sender plus a Provenance (transmit), as the IG's intermediary examples do.
    `full_urls_differ`: urn:uuid fullUrls that are not the resource ids (references use the fullUrls)."""
    ids = {name: _uid() for name in ("header", "enc", "pat", "loc", "prac", "org", "cond", "cov", "payer", "inter")}
    url = {k: f"urn:uuid:{_uid() if full_urls_differ else v}" for k, v in ids.items()}
    hospital: dict[str, Any] = {
        "resourceType": "Organization",
        "id": ids["org"],
        "identifier": [{"system": "http://example.org/fhir/pid", "value": ids["org"]}],
        "name": "Centre hospitalier des Vosges",
        "telecom": [{"system": "phone", "value": "0329000001"}],
    }
    patient: dict[str, Any] = {
        "resourceType": "Patient",
        "id": ids["pat"],
        "identifier": [{"system": "http://example.org/fhir/mrn", "value": "MRN-778"}],
        "name": [{"family": "Durand", "given": ["Marc"], "use": "official"}],
        "gender": "male",
        "birthDate": "1979-03-05",
        "address": [{"line": ["3 rue des Lilas"], "city": "Vittel", "postalCode": postal_code, "country": country}],
    }
    if french:
        hospital["identifier"].append({"system": FINESS, "value": finess})
        patient["identifier"].insert(0, {"system": INS_NIR_TEST, "value": TEST_NIR})
    practitioner: dict[str, Any] = {"resourceType": "Practitioner", "id": ids["prac"], "name": [{"family": "Martin"}]}
    if attending == "practitioner-email":
        practitioner["telecom"] = [{"system": "email", "use": "work", "value": "p.martin@ch-vosges.mssante.fr"}]
    encounter: dict[str, Any] = {
        "resourceType": "Encounter",
        "id": ids["enc"],
        "identifier": [{"system": "http://example.org", "value": nda}],
        "status": "finished" if event == "notification-discharge" else "in-progress",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
        "type": [{"coding": [{"system": "http://example.org/fhir/encounters", "code": "1234"}]}],
        "subject": {"reference": url["pat"]},
        "participant": [] if attending == "none" else [{"individual": {"reference": url["prac"]}}],
        "period": {"start": start, **({"end": end} if end else {})},
        "location": [{"location": {"reference": url["loc"]}}],
        "serviceProvider": {"reference": url["org"]},
    }
    if not encounter["participant"]:
        del encounter["participant"]
    if event == "notification-discharge":
        encounter["hospitalization"] = {
            "dischargeDisposition": {
                "coding": [{"system": "http://terminology.hl7.org/CodeSystem/discharge-disposition", "code": "home"}]
            }
        }
    header: dict[str, Any] = {
        "resourceType": "MessageHeader",
        "id": ids["header"],
        "eventCoding": {"system": DAVINCI_EVENT_SYSTEM, "code": event},
        "destination": [{"endpoint": "https://example.org/Endpoints/relais", "name": "Relais"}],
        "author": {"reference": url["prac"]},
        "responsible": {"reference": url["org"]},
        "sender": {"reference": url["inter"] if relayed else url["org"]},
        "source": {"name": "DPI", "endpoint": "https://dpi.ch-vosges.example/fhir"},
        "focus": [{"reference": url["enc"]}],
    }
    entries = [
        _entry(header, url["header"]),
        _entry(encounter, url["enc"]),
        _entry(patient, url["pat"]),
        _entry(
            {
                "resourceType": "Location",
                "id": ids["loc"],
                "name": "CH Vosges",
                "managingOrganization": {"reference": url["org"]},
            },
            url["loc"],
        ),
        _entry(practitioner, url["prac"]),
        _entry(hospital, url["org"]),
        _entry(
            {
                "resourceType": "Condition",
                "id": ids["cond"],
                "subject": {"reference": url["pat"]},
                "code": {"coding": [{"system": "http://snomed.info/sct", "code": "38341003"}]},
            },
            url["cond"],
        ),
        _entry(
            {
                "resourceType": "Coverage",
                "id": ids["cov"],
                "status": "active",
                "beneficiary": {"reference": url["pat"]},
                "payor": [{"reference": url["payer"]}],
            },
            url["cov"],
        ),
        _entry({"resourceType": "Organization", "id": ids["payer"], "name": "Caisse primaire"}, url["payer"]),
    ]
    if relayed:
        intermediary = {"resourceType": "Organization", "id": ids["inter"], "name": "Intermédiaire régional"}
        if french:
            intermediary["identifier"] = [{"system": FINESS, "value": INTERMEDIARY_FINESS}]
        entries.insert(
            1,
            _entry(
                {
                    "resourceType": "Provenance",
                    "id": _uid(),
                    "target": [{"reference": url["header"]}],
                    "recorded": "2024-03-01T08:05:00+01:00",
                    "activity": {
                        "coding": [
                            {"system": "http://terminology.hl7.org/CodeSystem/iso-21089-lifecycle", "code": "transmit"}
                        ]
                    },
                    "agent": [
                        {"who": {"reference": url["prac"]}, "onBehalfOf": {"reference": url["org"]}},
                        {"who": {"reference": url["inter"]}},
                    ],
                }
            ),
        )
        entries.append(_entry(intermediary, url["inter"]))
    return {
        "resourceType": "Bundle",
        "id": message_id or f"{event}-bundle-01",
        "type": "message",
        "timestamp": start,
        "entry": entries,
    }


def synthea_transaction(patients: int = 2) -> dict[str, Any]:
    """A Synthea-style transaction Bundle (Patient, Encounter... with PUT/POST requests): test data a sender
    loads into its own server, not a message."""
    entries = []
    for _ in range(patients):
        pid, eid = _uid(), _uid()
        entries.append(
            {
                "fullUrl": f"urn:uuid:{pid}",
                "resource": {"resourceType": "Patient", "id": pid, "name": [{"family": "Synthea"}]},
                "request": {"method": "PUT", "url": f"Patient/{pid}"},
            }
        )
        entries.append(
            {
                "fullUrl": f"urn:uuid:{eid}",
                "resource": {
                    "resourceType": "Encounter",
                    "id": eid,
                    "status": "finished",
                    "class": {"code": "IMP"},
                    "subject": {"reference": f"urn:uuid:{pid}"},
                },
                "request": {"method": "POST", "url": "Encounter"},
            }
        )
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


# --- ANS Cercle de soins ------------------------------------------------------------------------------------


def cds_patient(nir: str = TEST_NIR, system: str = INS_NIR_TEST) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": "cds-patient-1",
        "identifier": [
            {
                "use": "official",
                "type": {
                    "coding": [
                        {"system": "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-v2-0203", "code": "INS-NIR"}
                    ]
                },
                "system": system,
                "value": nir,
            }
        ],
        "name": [{"use": "official", "family": "Lebrun", "given": ["Anne"]}],
        "gender": "female",
        "birthDate": "1979-03-05",
        "address": [{"city": "Vittel", "postalCode": "88800", "country": "FRA"}],
    }


def cds_related_person() -> dict[str, Any]:
    return {
        "resourceType": "RelatedPerson",
        "id": "cds-relatedperson-1",
        "identifier": [{"use": "temp", "system": "https://aidants.example.org", "value": "aidant-7"}],
        "active": True,
        "patient": {"reference": "Patient/cds-patient-1"},
        "relationship": [
            {"coding": [{"system": TRE_R260, "code": "ECON", "display": "Entité à contacter en cas d'urgence"}]},
            {"coding": [{"system": TRE_R216, "code": "NBOR", "display": "Voisin(e)"}]},
        ],
        "name": [{"use": "official", "family": "Moreau", "given": ["Lucie"]}],
        "telecom": [{"system": "phone", "value": "0611223344"}],
    }


def cds_organization() -> dict[str, Any]:
    """The IG's Organization has no identifier at all: a name, a type and an address."""
    return {
        "resourceType": "Organization",
        "id": "cds-organization-1",
        "active": True,
        "type": [
            {"coding": [{"system": "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-v2-3307", "code": "MEDICAL"}]}
        ],
        "name": "Cabinet médical des Thermes",
        "address": [{"line": ["2 avenue Bouloumié"], "city": "Vittel", "postalCode": "88800", "country": "99100"}],
    }


def cds_careteam(*, subject_identifier: bool = True, references: str = "literal") -> dict[str, Any]:
    """The IG's CareTeam shape: literal references, a RelatedPerson and an Organization member with periods
    (one ending in the future), no participant role, managingOrganization by reference.
    `references="uuid"` points at the transaction's urn:uuid fullUrls instead."""
    ref = {
        "literal": {
            "pat": "Patient/cds-patient-1",
            "rp": "RelatedPerson/cds-relatedperson-1",
            "org": "Organization/cds-organization-1",
        },
        "uuid": {
            "pat": "urn:uuid:11111111-1111-4111-8111-111111111113",
            "rp": "urn:uuid:11111111-1111-4111-8111-111111111114",
            "org": "urn:uuid:11111111-1111-4111-8111-111111111112",
        },
    }[references]
    subject: dict[str, Any] = {"reference": ref["pat"]}
    if subject_identifier:
        subject["identifier"] = {"system": INS_NIR_TEST, "value": TEST_NIR}
    return {
        "resourceType": "CareTeam",
        "id": "cds-careteam-1",
        "meta": {"profile": ["https://interop.esante.gouv.fr/ig/fhir/cds/StructureDefinition/cds-ihe-careteam"]},
        "language": "fr",
        "identifier": [{"system": "https://msp.example.org/careteam", "value": "1"}],
        "status": "active",
        "name": "Cercle de soins de Mme Anne Lebrun",
        "subject": subject,
        "period": {"start": "2024-01-12"},
        "participant": [
            {"member": {"reference": ref["rp"]}, "period": {"start": "2024-01-12"}},
            {
                "member": {"reference": ref["org"]},
                "period": {"start": "2024-01-12", "end": "2034-12-18T13:48:19+01:00"},
            },
        ],
        "managingOrganization": [{"reference": ref["org"]}],
    }


def with_empty_translation(resource: dict[str, Any]) -> dict[str, Any]:
    """The IG's English build: an empty translation of the name (invalid FHIR: empty string)."""
    resource = copy.deepcopy(resource)
    resource["_name"] = {
        "extension": [
            {
                "url": "http://hl7.org/fhir/StructureDefinition/translation",
                "extension": [{"url": "lang", "valueCode": "en"}, {"url": "content", "valueString": ""}],
            }
        ]
    }
    return resource


def cds_transaction(
    *, nir: str = TEST_NIR, nir_system: str = INS_NIR_TEST, references: str = "literal"
) -> dict[str, Any]:
    """The IG's creation transaction: CareTeam, Organization, Patient, RelatedPerson, each POSTed, urn:uuid
    fullUrls; the CareTeam refers to the others by `Type/id` (as the IG example does) or by their fullUrls."""
    careteam = cds_careteam(subject_identifier=False, references=references)
    return {
        "resourceType": "Bundle",
        "id": "cds-transaction-1",
        "meta": {
            "profile": [
                "https://interop.esante.gouv.fr/ig/fhir/cds/StructureDefinition/cds-bundle-transaction-creation"
            ]
        },
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:11111111-1111-4111-8111-111111111111",
                "resource": careteam,
                "request": {"method": "POST", "url": "CareTeam"},
            },
            {
                "fullUrl": "urn:uuid:11111111-1111-4111-8111-111111111112",
                "resource": cds_organization(),
                "request": {"method": "POST", "url": "Organization"},
            },
            {
                "fullUrl": "urn:uuid:11111111-1111-4111-8111-111111111113",
                "resource": cds_patient(nir, nir_system),
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "fullUrl": "urn:uuid:11111111-1111-4111-8111-111111111114",
                "resource": cds_related_person(),
                "request": {"method": "POST", "url": "RelatedPerson"},
            },
        ],
    }


__all__ = ["IG_WRONG_KEY_NIR", "INS_NIR", "RELAIS_ROLE", "TEST_NIR", "TRE_R259", "TRE_R260"]
