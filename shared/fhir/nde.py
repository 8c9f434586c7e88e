"""ANS "Notification d'évènements" (NdE, ans.fhir.fr.nde): the event declaration a hospital posts (flux 3,
profile nde-eventdeclaration) read into the same message the FHIR messaging door reads.

Why an adapter and not a second reader: a declaration is turned into the equivalent message Bundle (MessageHeader
with the TRE_R254 event, an Encounter for the stay, the contained Patient and declaring Organization) and then
goes through `parse_message_bundle` and `shared.fhir.encounter.read_encounter_message` like any hospital message,
so the caller check, identity rules (INS or local-only) and everything each service checks are the same code.

What the declaration does not carry is filled in and documented (docs/conformance.md, NdE):
- the stay key (Encounter.identifier): `CommunicationRequest.groupIdentifier`, else its first identifier, else
  its id under Relais' NdE system; the message id is per declarant + that id or identifier (idempotency);
- ADM: Encounter in-progress, class IMP (NdE has no class; a declared admission is a hospital stay), start =
  event-time; SOR: Encounter finished, end = event-time, discharge disposition "not stated".
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import ValidationError

from shared.errors import BadRequest, Forbidden, PayloadTooLarge, RelaisError, Unprocessable
from shared.events import TRE_R254_OID, TRE_R254_SYSTEM, EventType
from shared.fhir.intake import MessageBundle, check_codes, check_content_type, parse_json, parse_message_bundle
from shared.fhir.models import CommunicationRequest
from shared.fhir.outcome import outcome_from_validation_error
from shared.identifiers import FINESS

__all__ = [
    "DECLARATION_PROFILE",
    "EVENT_CODES",
    "EVENT_TIME",
    "EVENT_TYPE",
    "NDE_ADMISSION_ENDPOINT",
    "NDE_BASE",
    "NDE_DISCHARGE_ENDPOINT",
    "NDE_ENDPOINT",
    "NDE_EXTENSION_BASE",
    "NOTIFICATION_PROFILE",
    "SUBSCRIPTION_PROFILE",
    "Declaration",
    "declaration_message",
    "declaration_paths",
    "declared",
    "declared_code",
    "extension_values",
]

NDE_EXTENSION_BASE = "https://interop.esante.gouv.fr/ig/fhir/nde/StructureDefinition/"
DECLARATION_PROFILE = NDE_EXTENSION_BASE + "nde-eventdeclaration"
SUBSCRIPTION_PROFILE = NDE_EXTENSION_BASE + "nde-subscription"
NOTIFICATION_PROFILE = NDE_EXTENSION_BASE + "nde-notificationrequest"
EVENT_TYPE = NDE_EXTENSION_BASE + "event-type"
EVENT_TIME = NDE_EXTENSION_BASE + "event-time"
EVENT_EMISSION_TIME = NDE_EXTENSION_BASE + "event-emission-time"
# Older builds of the IG named the extensions under the CI-SIS canonical base; read both.
_LEGACY_BASE = "http://esante.gouv.fr/ci-sis/fhir/StructureDefinition/"
_LEGACY_NAMES = {"EventType": "event-type", "EventTime": "event-time"}

# The TRE_R254 codes Relais acts on, and the event each one is (ADM admission, SOR discharge).
EVENT_CODES: dict[str, EventType] = {"ADM": EventType.ADMISSION_RECORDED, "SOR": EventType.DISCHARGE_RECORDED}
# A stay key of last resort: the declaration's own id, under this system.
NDE_ID_SYSTEM = "https://relais.example.org/nde/CommunicationRequest"
# Where declarations land (docs/architecture.md#public-surface): the NdE base in the combined mode, each
# service's own in separate mode.
NDE_BASE = "/nde/fhir"
NDE_ENDPOINT = f"{NDE_BASE}/CommunicationRequest"
NDE_ADMISSION_ENDPOINT = f"/admissions{NDE_ENDPOINT}"
NDE_DISCHARGE_ENDPOINT = f"/discharge{NDE_ENDPOINT}"
_NOT_STATED = "non précisé (déclaration NdE)"


def _canonical(url: Any) -> str:
    url = str(url or "")
    if url.startswith(_LEGACY_BASE):
        name = url[len(_LEGACY_BASE) :]
        return NDE_EXTENSION_BASE + _LEGACY_NAMES.get(name, name)
    return url


def extension_values(extensions: Any, url: str) -> list[Any]:
    """The `value[x]` of each extension with this url (legacy CI-SIS urls read as the IG's)."""
    found: list[Any] = []
    for ext in extensions if isinstance(extensions, list) else []:
        if isinstance(ext, dict) and _canonical(ext.get("url")) == url:
            found.extend(v for k, v in ext.items() if k.startswith("value"))
    return found


def declared_code(data: Any) -> str | None:
    """The TRE_R254 code of a declaration's event-type extension (upper case), or None: no validation here."""
    if not isinstance(data, dict):
        return None
    for value in extension_values(data.get("extension"), EVENT_TYPE):
        codings = value.get("coding") if isinstance(value, dict) else None
        for coding in codings if isinstance(codings, list) else []:
            if not isinstance(coding, dict) or coding.get("system") not in (TRE_R254_SYSTEM, TRE_R254_OID):
                continue
            code = coding.get("code")
            if isinstance(code, str):
                return code.strip().upper()
    return None


def _validate(data: dict[str, Any]) -> None:
    if data.get("resourceType") != "CommunicationRequest":
        got = data.get("resourceType")
        raise BadRequest(
            f"expected a CommunicationRequest (profile nde-eventdeclaration), got {got!r}",
            expression=["resourceType"],
        )
    try:
        model = CommunicationRequest.model_validate(data)
    except ValidationError as exc:
        err = BadRequest("CommunicationRequest is not valid FHIR R4", expression=["CommunicationRequest"])
        err.issues = outcome_from_validation_error(exc, "CommunicationRequest")  # type: ignore[attr-defined]
        raise err from exc
    except TypeError as exc:  # some fhir.resources validators raise it on a wrong JSON type
        raise BadRequest(
            "CommunicationRequest is not valid FHIR R4: an element has the wrong JSON type",
            expression=["CommunicationRequest"],
        ) from exc
    issues = check_codes(model, "CommunicationRequest")
    if issues:
        err = BadRequest("CommunicationRequest has invalid codes", expression=[issues[0]["expression"][0]])
        err.issues = issues  # type: ignore[attr-defined]
        raise err


def _contained(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    contained = data.get("contained")
    return {
        f"#{r['id']}": r
        for r in (contained if isinstance(contained, list) else [])
        if isinstance(r, dict) and isinstance(r.get("id"), str)
    }


def _local_refs(node: Any, types: dict[str, str]) -> Any:
    """A copy with each contained reference "#id" rewritten "Type/id", as it is in the message Bundle."""
    if isinstance(node, dict):
        out = {k: _local_refs(v, types) for k, v in node.items()}
        ref = out.get("reference")
        if isinstance(ref, str) and ref in types:
            out["reference"] = f"{types[ref]}/{ref[1:]}"
        return out
    if isinstance(node, list):
        return [_local_refs(item, types) for item in node]
    return node


def _contained_of(data: dict[str, Any], element: str, allowed: tuple[str, ...]) -> dict[str, Any]:
    ref = (data.get(element) or {}).get("reference") if isinstance(data.get(element), dict) else None
    found = _contained(data).get(ref) if isinstance(ref, str) else None
    if found is None or found.get("resourceType") not in allowed:
        raise Unprocessable(
            f"CommunicationRequest.{element} must point at a contained {' or '.join(allowed)} (\"#id\")",
            expression=[f"CommunicationRequest.{element}"],
        )
    return found


def _one_value(data: dict[str, Any], url: str, kind: str, name: str) -> Any:
    values = extension_values(data.get("extension"), url)
    if len(values) != 1:
        raise Unprocessable(
            f"the nde-eventdeclaration needs exactly one {name} extension ({url})",
            expression=[f"CommunicationRequest.extension('{name}')"],
        )
    if kind == "dateTime" and not (isinstance(values[0], str) and "T" in values[0]):
        raise Unprocessable(
            f"the {name} extension needs a valueDateTime with a time and a time zone",
            expression=[f"CommunicationRequest.extension('{name}')"],
        )
    return values[0]


def _identifier_key(value: Any) -> str | None:
    if isinstance(value, dict) and value.get("system") and value.get("value"):
        return f"{value['system']}|{value['value']}"
    return None


def _stay_identifier(data: dict[str, Any]) -> dict[str, str]:
    for candidate in (data.get("groupIdentifier"), *(data.get("identifier") or [])):
        if _identifier_key(candidate):
            return {"system": candidate["system"], "value": candidate["value"]}
    if isinstance(data.get("id"), str):
        return {"system": NDE_ID_SYSTEM, "value": data["id"]}
    raise Unprocessable(
        "the declaration needs an id or an identifier (system and value): it is how a repeated declaration "
        "is recognised",
        expression=["CommunicationRequest.identifier"],
    )


def _declaration_key(data: dict[str, Any]) -> str:
    """The declaration's own key: first identifier, else its id (the stay key may be shared by ADM and SOR)."""
    for candidate in data.get("identifier") or []:
        if (key := _identifier_key(candidate)) is not None:
            return key
    if isinstance(data.get("id"), str):
        return f"{NDE_ID_SYSTEM}|{data['id']}"
    return "|".join(_stay_identifier(data).values())


def _declarant(org: dict[str, Any]) -> str:
    for identifier in org.get("identifier") or []:
        if isinstance(identifier, dict) and identifier.get("system") == FINESS and identifier.get("value"):
            return str(identifier["value"]).strip()
    return ""  # the shared reader refuses a hospital without FINESS, with its own message


@dataclass(frozen=True)
class Declaration:
    """A hospital's NdE declaration: the equivalent message, and the declaration as Relais stores it."""

    message: MessageBundle
    resource: dict[str, Any]

    @property
    def event_type(self) -> EventType:
        return self.message.event_type

    @property
    def code(self) -> str:
        return self.message.event_code


def declared(declaration: Declaration) -> dict[str, Any]:
    """The answer to a create: the declaration under its Relais id (the message id), where it can be found."""
    resource = {**declaration.resource, "id": declaration.message.message_id}
    return {
        "content": resource,
        "status_code": 201,
        "headers": {"Location": f"{NDE_ENDPOINT}/{resource['id']}"},
    }


# The shared reader names message elements; a declarant reads them as elements of its declaration.
_PATHS = (
    ("Encounter.serviceProvider (or MessageHeader.sender)", "CommunicationRequest.requester"),
    ("Encounter.serviceProvider", "CommunicationRequest.requester"),
    ("MessageHeader.sender", "CommunicationRequest.requester"),
    ("Encounter.identifier", "CommunicationRequest.groupIdentifier"),
    ("Encounter.period.start", "CommunicationRequest.extension('EventTime')"),
    ("Encounter.period.end", "CommunicationRequest.extension('EventTime')"),
    ("Encounter.subject", "CommunicationRequest.subject"),
    ("Patient.identifier", "CommunicationRequest.contained(Patient).identifier"),
    ("PractitionerRole.telecom", "CommunicationRequest.contained(PractitionerRole).telecom"),
)


def _as_declaration(text: str) -> str:
    for message_path, declaration_path in _PATHS:
        text = text.replace(message_path, declaration_path)
    return text


@contextmanager
def declaration_paths() -> Iterator[None]:
    """Refusals raised while a service reads the equivalent message name the declaration's elements."""
    try:
        yield
    except RelaisError as err:
        err.diagnostics = _as_declaration(err.diagnostics)
        err.args = (err.diagnostics,)
        err.expression = [_as_declaration(path) for path in err.expression]
        raise


def declaration_message(body: bytes, content_type: str | None, max_bytes: int) -> Declaration:
    """The message Bundle equivalent to an nde-eventdeclaration, validated by the messaging intake."""
    if len(body) > max_bytes:
        raise PayloadTooLarge(f"Body is {len(body)} bytes; the limit is {max_bytes}")
    check_content_type(content_type)
    data = parse_json(body)
    _validate(data)
    profiles = (data.get("meta") or {}).get("profile") or []
    if NOTIFICATION_PROFILE in profiles:
        raise Unprocessable(
            "this is an nde-notificationrequest (flux 4), what Relais sends to subscribers; a hospital declares "
            "an event with an nde-eventdeclaration CommunicationRequest (flux 3)",
            issue_code="not-supported",
            expression=["CommunicationRequest.meta.profile"],
        )
    code = declared_code(data)
    if code not in EVENT_CODES:
        raise Unprocessable(
            "event-type must be a TRE_R254 code Relais acts on: ADM (admission) or SOR (discharge)"
            + (f", got {code}" if code else ""),
            issue_code="not-supported",
            expression=["CommunicationRequest.extension('EventType')"],
        )
    event_time = _one_value(data, EVENT_TIME, "dateTime", "EventTime")
    if data.get("status") not in ("active", "completed"):
        raise Unprocessable(
            "a declaration is active (or completed); another status declares nothing",
            expression=["CommunicationRequest.status"],
        )
    patient = _contained_of(data, "subject", ("Patient",))
    org = _contained_of(data, "requester", ("Organization", "Practitioner", "PractitionerRole"))
    types = {ref: str(r.get("resourceType")) for ref, r in _contained(data).items()}
    declarant_ref = f"{org['resourceType']}/{org['id']}"
    message_id = "nde-" + hashlib.sha256(f"{_declarant(org)}|{_declaration_key(data)}".encode()).hexdigest()[:40]
    encounter: dict[str, Any] = {
        "resourceType": "Encounter",
        "id": f"{message_id}-encounter",
        "identifier": [_stay_identifier(data)],
        "subject": {"reference": f"Patient/{patient['id']}"},
    }
    if org["resourceType"] == "Organization":
        encounter["serviceProvider"] = {"reference": declarant_ref}
    if code == "ADM":
        encounter |= {"status": "in-progress", "class": _inpatient(), "period": {"start": event_time}}
    else:
        encounter |= {
            "status": "finished",
            "class": _inpatient(),
            "period": {"end": event_time},
            "hospitalization": {"dischargeDisposition": {"text": _NOT_STATED}},
        }
    header = {
        "resourceType": "MessageHeader",
        "id": message_id,
        "eventCoding": {"system": TRE_R254_SYSTEM, "code": code},
        "source": {"endpoint": NDE_ID_SYSTEM},
        "sender": {"reference": declarant_ref},
        "focus": [{"reference": f"Encounter/{encounter['id']}"}],
    }
    contained = [_local_refs(r, types) for r in _contained(data).values()]
    entries = [header, encounter, *contained]
    bundle = {
        "resourceType": "Bundle",
        "id": message_id,
        "type": "message",
        "timestamp": data.get("authoredOn") or event_time,
        "entry": [{"fullUrl": f"urn:relais:nde:{r['resourceType']}/{r['id']}", "resource": r} for r in entries],
    }
    raw = json.dumps(bundle).encode()
    message = parse_message_bundle(raw, "application/fhir+json", max(max_bytes, len(raw)))
    return Declaration(message, data)


def _inpatient() -> dict[str, str]:
    return {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"}


C = TypeVar("C")


def declaration_command(
    body: bytes,
    content_type: str | None,
    max_bytes: int,
    *,
    accepted: Collection[EventType],
    other_door: str,
    build: Callable[[MessageBundle], C],
    refused: Callable[[], None],
) -> tuple[Declaration, C]:
    """A service's NdE door: read the declaration, send the other event types to `other_door`, build the command
    through the service's own reader; `refused` audits a declaration for another hospital before the 403."""
    declaration = declaration_message(body, content_type, max_bytes)
    if declaration.event_type not in accepted:
        raise Unprocessable(
            f"a {declaration.code} declaration belongs at {other_door} (or {NDE_ENDPOINT} in the combined mode)",
            issue_code="not-supported",
            expression=["CommunicationRequest.extension('EventType')"],
        )
    try:
        with declaration_paths():
            return declaration, build(declaration.message)
    except Forbidden:
        refused()
        raise
