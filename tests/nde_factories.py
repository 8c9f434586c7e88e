"""The project's own NdE fixtures, in the shapes of the ANS NdE IG (ans.fhir.fr.nde): an event declaration
(flux 3, like the IG's `com2`), a per-patient Subscription (flux 1, like `sub1`). Written for Relais' tests with
French identifiers (test INS-NIR, FINESS with valid keys); none of the IG's files is copied here."""

from __future__ import annotations

import json
from typing import Any

from shared.events import TRE_R254_SYSTEM
from shared.fhir.nde import DECLARATION_PROFILE, EVENT_TIME, EVENT_TYPE, NDE_EXTENSION_BASE, SUBSCRIPTION_PROFILE
from shared.identifiers import FINESS, INS_NIR_TEST, RPPS
from tests import factories as f

FR_CORE = "https://hl7.fr/ig/fhir/core/StructureDefinition/"
DISPLAY = {"ADM": "Admission d'un patient dans un établissement", "SOR": "Sortie d'un patient de l'établissement"}


def event_type(code: str) -> dict[str, Any]:
    return {
        "url": EVENT_TYPE,
        "valueCodeableConcept": {"coding": [{"system": TRE_R254_SYSTEM, "code": code, "display": DISPLAY[code]}]},
    }


def nde_patient(nir: str | None = f.DEFAULT_NIR, *, local: tuple[str, str] | None = None) -> dict[str, Any]:
    identifiers = []
    if nir:
        identifiers.append({"system": INS_NIR_TEST, "value": nir})
    if local:
        identifiers.append({"system": local[0], "value": local[1]})
    resource: dict[str, Any] = {
        "resourceType": "Patient",
        "id": "patient-1",
        "meta": {"profile": [FR_CORE + "fr-core-patient"]},
        "name": [{"use": "usual", "family": "DUPONT", "given": ["Alice"]}],
        "gender": "female",
        "birthDate": "1950-07-02",
        "address": [{"use": "home", "postalCode": "88000", "city": "Épinal", "country": "FRA"}],
    }
    if identifiers:
        resource["identifier"] = identifiers
    return resource


def nde_organization(finess: str = f.DEFAULT_FINESS, org_id: str = "declarant") -> dict[str, Any]:
    return {
        "resourceType": "Organization",
        "id": org_id,
        "meta": {"profile": [FR_CORE + "fr-core-organization"]},
        "identifier": [{"system": FINESS, "value": finess}],
        "name": "Service de médecine, Centre hospitalier",
        "telecom": [{"system": "phone", "value": "03 29 00 00 00"}],
    }


def declaration(
    code: str = "SOR",
    *,
    declaration_id: str = "decl-1",
    finess: str = f.DEFAULT_FINESS,
    nir: str | None = f.DEFAULT_NIR,
    local: tuple[str, str] | None = None,
    event_time: str = "2026-11-29T10:00:00+01:00",
    stay: str | None = "NDA-4242",
) -> dict[str, Any]:
    """An nde-eventdeclaration CommunicationRequest: contained Patient and declaring Organization."""
    resource: dict[str, Any] = {
        "resourceType": "CommunicationRequest",
        "id": declaration_id,
        "meta": {"profile": [DECLARATION_PROFILE]},
        "contained": [nde_patient(nir, local=local), nde_organization(finess)],
        "extension": [event_type(code), {"url": EVENT_TIME, "valueDateTime": event_time}],
        "status": "active",
        "subject": {"reference": "#patient-1"},
        "payload": [
            {
                "contentAttachment": {
                    "contentType": "text/plain",
                    "data": "U29ydGll",
                    "title": "Évènement du séjour",
                    "creation": event_time,
                }
            }
        ],
        "requester": {"reference": "#declarant"},
    }
    if stay:
        resource["groupIdentifier"] = {"system": "https://dpi.ch-exemple.fr/nda", "value": stay}
    return resource


def subscription(
    code: str = "SOR",
    *,
    channel: str = "rest-hook",
    endpoint: str = "https://msp.example.org/nde/hook",
    subscriber: dict[str, Any] | None = None,
    nir: str = f.DEFAULT_NIR,
    declarant_finess: str | None = f.DEFAULT_FINESS,
    end: str | None = None,
) -> dict[str, Any]:
    """An nde-subscription: subscriber, declarant, patient extensions, criteria on the event type."""
    subscriber = subscriber or {
        "resourceType": "Practitioner",
        "id": "subscriber",
        "identifier": [{"system": RPPS, "value": f.DEFAULT_RPPS}],
        "name": [{"family": "MEDECIN", "given": ["Paul"]}],
    }
    contained = [nde_patient(nir), subscriber]
    extensions = [
        {"url": NDE_EXTENSION_BASE + "start", "valueDateTime": "2026-01-01T00:00:00+01:00"},
        {"url": NDE_EXTENSION_BASE + "subject", "valueReference": {"reference": "#patient-1"}},
        event_type(code),
        {"url": NDE_EXTENSION_BASE + "subscriber", "valueReference": {"reference": f"#{subscriber['id']}"}},
    ]
    if declarant_finess:
        contained.append(nde_organization(declarant_finess))
        extensions.append({"url": NDE_EXTENSION_BASE + "declarant", "valueReference": {"reference": "#declarant"}})
    resource: dict[str, Any] = {
        "resourceType": "Subscription",
        "meta": {"profile": [SUBSCRIPTION_PROFILE]},
        "contained": contained,
        "extension": extensions,
        "status": "requested",
        "reason": "Être prévenu de la sortie de ma patiente",
        "criteria": f"CommunicationRequest?event-type={code}",
        "channel": {"type": channel, "endpoint": endpoint, "payload": "application/fhir+json"},
    }
    if channel == "email":
        resource["channel"] = {"type": "email", "endpoint": "mailto:paul.medecin@msp.example.org"}
    if end:
        resource["end"] = end
    return resource


def body(resource: dict[str, Any]) -> bytes:
    return json.dumps(resource).encode()
