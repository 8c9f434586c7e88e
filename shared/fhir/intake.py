"""Intake of FHIR messages (`$process-message`): size, media type, JSON, shape, R4B validation, event code.

Status choices: anything that is not a well-formed FHIR message Bundle is 400 (a Bundle of another type is
a malformed request for `$process-message`, like a wrong resourceType); a valid message Relais cannot act
on (unknown event code, focus missing from the Bundle or of the wrong type) is 422.
Message identity: `Bundle.id` is the message id (required; it is the idempotency key). The header id is
echoed in `MessageHeader.response.identifier` by the response builder, as R4 requires.
"""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from shared.errors import BadRequest, PayloadTooLarge, Unprocessable, UnsupportedMediaType
from shared.events import EventType, event_type_for, spec
from shared.fhir.full_urls import full_url_for
from shared.fhir.models import Bundle, MessageHeader, Resource, model_class, to_json
from shared.fhir.offload import off_the_lock
from shared.fhir.outcome import issue, outcome_from_validation_error
from shared.minimise import MAX_VALUE_LENGTH, MAX_VALUE_WORDS

__all__ = [
    "CONTENT_TYPES",
    "MessageBundle",
    "check_codes",
    "check_content_type",
    "check_unique_full_urls",
    "event_type_for",
    "forwardable",
    "parse_json",
    "parse_message_bundle",
    "read_message_bundle",
    "resolve_reference",
    "usable_commune",
    "usable_postal_code",
]

R = TypeVar("R", bound=Resource)

CONTENT_TYPES = {"application/fhir+json", "application/json"}
_LEGACY_CONTENT_TYPES = {"application/json+fhir"}  # DSTU2-era name some interfaces still send

# fhir.resources does not enforce required bindings, and for two statuses its list is cut short ("+"):
# the full R4 value sets, so a bogus status is caught with its path.
_FULL_CODE_LISTS: dict[tuple[str, str], frozenset[str]] = {
    ("Encounter", "status"): frozenset(
        [
            "planned", "arrived", "triaged", "in-progress", "onleave", "finished", "cancelled",
            "entered-in-error", "unknown",
        ]
    ),
    ("Task", "status"): frozenset(
        [
            "draft", "requested", "received", "accepted", "rejected", "ready", "cancelled", "in-progress",
            "on-hold", "failed", "completed", "entered-in-error",
        ]
    ),
}
_OPEN_LIST_MARKERS = {"+", "etc."}


def check_content_type(header: str | None) -> str:
    """The media type if it is FHIR JSON (parameters allowed, charset must be UTF-8), else 415."""
    if not header or not header.strip():
        raise UnsupportedMediaType("Content-Type is missing; send application/fhir+json")
    media_type, *params = (part.strip() for part in header.split(";"))
    media_type = media_type.lower()
    if media_type not in CONTENT_TYPES | _LEGACY_CONTENT_TYPES:
        raise UnsupportedMediaType(f"Content-Type {media_type} is not supported; send application/fhir+json")
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in ("utf-8", "utf8"):
            raise UnsupportedMediaType(f"charset {value.strip()} is not supported; send UTF-8")
    return media_type


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_json(body: bytes) -> dict[str, Any]:
    """The JSON object in a UTF-8 body (a leading BOM is tolerated), else 400."""
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BadRequest(f"Body is not UTF-8 (invalid byte at offset {exc.start})") from exc
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise BadRequest(
            f"Body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from exc
    except (ValueError, RecursionError) as exc:
        raise BadRequest(f"Body is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise BadRequest(f"Body must be a JSON object (a FHIR resource), got a JSON {type(data).__name__}")
    return data


def usable_postal_code(value: str | None) -> str | None:
    """A postal code Relais can route on and store (10 characters at most), else None."""
    value = value.strip() if value else None
    return value if value and len(value) <= 10 else None


def usable_commune(value: str | None) -> str | None:
    """A commune name that may go into a minimised payload (a short name, not free text), else None."""
    value = value.strip() if value else None
    if not value or "\n" in value or len(value) > MAX_VALUE_LENGTH or len(value.split()) > MAX_VALUE_WORDS:
        return None
    return value


def _reference_key(ref: str) -> str:
    # "Patient/1/_history/2" -> "Patient/1"; absolute "https://h/fhir/Patient/1" -> "Patient/1"
    parts = ref.split("/_history/")[0].rstrip("/").split("/")
    return "/".join(parts[-2:]) if len(parts) >= 2 else ref


def index_resources(bundle: Bundle) -> dict[str, Resource]:
    """Every entry resource by its fullUrl and by `Type/id`."""
    index: dict[str, Resource] = {}
    for entry in bundle.entry or []:
        resource = entry.resource
        if resource is None:
            continue
        if entry.fullUrl:
            index[entry.fullUrl] = resource
        if resource.id:
            index[f"{resource.get_resource_type()}/{resource.id}"] = resource
    return index


def resolve_reference(ref: str | None, index: dict[str, Resource]) -> Resource | None:
    """The bundled resource a reference points at: `urn:uuid:` fullUrl, `Type/id`, or an absolute URL."""
    if not ref or ref.startswith("#"):
        return None
    if ref in index:
        return index[ref]
    return index.get(_reference_key(ref))


@dataclass
class MessageBundle:
    """A validated FHIR message Bundle and what the handlers need from it."""

    bundle: Bundle
    header: MessageHeader
    event_type: EventType
    event_code: str
    event_system: str | None
    message_id: str
    resources_by_reference: dict[str, Resource] = field(default_factory=dict)
    focus: list[Resource] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict, repr=False)
    _received: dict[int, tuple[Any, dict[str, Any]]] | None = field(default=None, init=False, repr=False, compare=False)

    def resource(self, ref: str | None) -> Resource | None:
        return resolve_reference(ref, self.resources_by_reference)

    def all(self, resource_type: str) -> list[Resource]:
        return [
            e.resource
            for e in self.bundle.entry or []
            if e.resource is not None and e.resource.get_resource_type() == resource_type
        ]

    def all_of(self, cls: type[R]) -> list[R]:
        """The bundled resources of one model class, typed."""
        return [e.resource for e in self.bundle.entry or [] if isinstance(e.resource, cls)]

    def first(self, resource_type: str) -> Resource | None:
        found = self.all(resource_type)
        return found[0] if found else None

    def json_of(self, resource: Resource) -> dict[str, Any]:
        """The JSON of a bundled resource as received: validated, and free of empty elements, at intake.

        Cheaper than serialising the model again (which costs more than validating it).
        """
        if self._received is None:
            # Indexed once: looking each resource up by position made a 1,000-entry Bundle cost O(n²).
            raw_entries = self.raw.get("entry") if self.raw else None
            raw_entries = raw_entries if isinstance(raw_entries, list) else []
            self._received = {
                id(entry.resource): (entry.resource, raw_entries[i]["resource"])
                for i, entry in enumerate(self.bundle.entry or [])
                if i < len(raw_entries) and isinstance(raw_entries[i], dict)
                and isinstance(raw_entries[i].get("resource"), dict)
            }
        found = self._received.get(id(resource))
        # The model is kept beside its JSON, so an id reused after a copy (pickle) never matches another.
        return found[1] if found is not None and found[0] is resource else to_json(resource)

    @property
    def header_id(self) -> str | None:
        return self.header.id


def _rewrite(node: Any, to: dict[int, str], msg: MessageBundle) -> Any:
    if isinstance(node, dict):
        out = {k: _rewrite(v, to, msg) for k, v in node.items()}
        ref = node.get("reference")
        if isinstance(ref, str) and (found := msg.resource(ref)) is not None and id(found) in to:
            out["reference"] = to[id(found)]
        return out
    if isinstance(node, list):
        return [_rewrite(item, to, msg) for item in node]
    return node


def forwardable(msg: MessageBundle) -> list[tuple[Resource, dict[str, Any]]]:
    """Each entry after the MessageHeader with its JSON ready to forward: references to bundled resources
    rewritten to the fullUrl Relais will give them (the sender's urn:uuid fullUrls may differ from the ids)."""
    pairs: list[tuple[Resource, dict[str, Any]]] = []
    for entry in (msg.bundle.entry or [])[1:]:
        if entry.resource is None:
            continue
        data = dict(msg.json_of(entry.resource))
        data.setdefault("id", str(uuid.uuid5(_ID_NAMESPACE, entry.fullUrl or str(len(pairs)))))
        pairs.append((entry.resource, data))
    to = {id(resource): full_url_for(data) for resource, data in pairs}
    return [(resource, _rewrite(data, to, msg)) for resource, data in pairs]


_ID_NAMESPACE = uuid.UUID("9a4e7c1d-2f3b-4d5a-8e6f-7b8c9d0e1f2a")  # ids for bundled resources sent without one


@functools.cache
def _coded_fields(cls: type[BaseModel]) -> tuple[tuple[str, str, frozenset[str] | None], ...]:
    """Per model class: (attribute, element name, required codes or None) of each element, computed once."""
    resource_type = cls.get_resource_type() if issubclass(cls, Resource) else None
    fields = []
    for name, info in cls.model_fields.items():
        if name.endswith("__ext"):
            continue
        element = info.alias or name
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        allowed = _FULL_CODE_LISTS.get((resource_type or "", element))
        if allowed is None and extra.get("enum_values"):
            enum_values = extra["enum_values"]
            listed = {str(v) for v in enum_values} if isinstance(enum_values, list) else set()
            allowed = None if listed & _OPEN_LIST_MARKERS else frozenset(listed)
        fields.append((name, element, allowed))
    return tuple(fields)


def _walk_codes(model: BaseModel, path: str) -> Iterator[tuple[str, str, frozenset[str]]]:
    for name, element, allowed in _coded_fields(type(model)):
        value = getattr(model, name, None)
        if value is None:
            continue
        is_list = isinstance(value, list)
        for i, item in enumerate(value if is_list else (value,)):
            if isinstance(item, BaseModel):
                yield from _walk_codes(item, f"{path}.{element}" + (f"[{i}]" if is_list else ""))
            elif allowed is not None and isinstance(item, str) and item not in allowed:
                yield f"{path}.{element}" + (f"[{i}]" if is_list else ""), item, allowed


def check_codes(model: BaseModel, root: str) -> list[dict[str, Any]]:
    """Issues for coded elements outside their required value set (fhir.resources only checks syntax)."""
    return [
        issue("error", "code-invalid", f"Unknown code; expected one of: {', '.join(sorted(allowed))}", [path])
        for path, _value, allowed in _walk_codes(model, root)
    ]


def _fail(message: str, expression: str, issues: list[dict[str, Any]] | None = None) -> BadRequest:
    err = BadRequest(message, expression=[expression])
    err.issues = issues or []  # type: ignore[attr-defined]
    return err


def _check_shape(data: dict[str, Any]) -> None:
    resource_type = data.get("resourceType")
    if resource_type != "Bundle":
        got = f"'{resource_type}'" if isinstance(resource_type, str) else "no resourceType"
        raise _fail(f"Expected a Bundle of type message, got {got}", "resourceType")
    if data.get("type") != "message":
        raise _fail(f"Expected Bundle.type 'message', got {data.get('type')!r}", "Bundle.type")
    entries = data.get("entry")
    if not isinstance(entries, list) or not entries:
        raise _fail("A message Bundle needs entries, the first a MessageHeader", "Bundle.entry")
    first = entries[0].get("resource") if isinstance(entries[0], dict) else None
    if not isinstance(first, dict) or first.get("resourceType") != "MessageHeader":
        raise _fail("The first entry of a message Bundle must be a MessageHeader", "Bundle.entry[0].resource")
    if not isinstance(data.get("id"), str) or not data["id"].strip():
        raise _fail("Bundle.id is required: it is the message id used to detect duplicates", "Bundle.id")
    check_unique_full_urls(entries, "Bundle")
    for i, entry in enumerate(entries):
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if isinstance(resource, dict) and model_class(str(resource.get("resourceType", ""))) is None:
            raise _fail(
                f"Unknown resourceType {resource.get('resourceType')!r} in entry {i}",
                f"Bundle.entry[{i}].resource.resourceType",
            )


def check_unique_full_urls(entries: Any, root: str) -> None:
    """FHIR bdl-7: no two entries of a Bundle share a fullUrl (a reference to it would name either)."""
    seen: set[str] = set()
    for i, entry in enumerate(entries if isinstance(entries, list) else []):
        full_url = entry.get("fullUrl") if isinstance(entry, dict) else None
        if not isinstance(full_url, str):
            continue
        if full_url in seen:
            raise _fail(f"entry {i} repeats the fullUrl of an earlier entry (fullUrls are unique in a Bundle)",
                        f"{root}.entry[{i}].fullUrl")
        seen.add(full_url)


def _empty_element(node: Any, path: str) -> str | None:
    """The path of the first empty array, empty object or null member (FHIR JSON allows none), else None."""
    if isinstance(node, dict):
        if not node:
            return path
        for key, value in node.items():
            found = None if value is not None else f"{path}.{key}"
            found = found or _empty_element(value, f"{path}.{key}")
            if found:
                return found
    elif isinstance(node, list):
        if not node:
            return path
        for i, item in enumerate(node):
            # null is allowed inside an array only, to align primitive values with their `_x` extensions
            found = _empty_element(item, f"{path}[{i}]") if item is not None else None
            if found:
                return found
    return None


def _check_no_empty_elements(data: dict[str, Any]) -> None:
    # An empty element validates but vanishes on serialisation, so the same resource would fail when Relais
    # builds the notification from it: refuse it here, where the hospital can be told.
    path = _empty_element(data, "Bundle")
    if path is not None:
        raise _fail(f"FHIR JSON allows no empty array, empty object or null value: {path}", path)


def _validate(data: dict[str, Any]) -> Bundle:
    try:
        bundle = Bundle.model_validate(data)
    except ValidationError as exc:
        issues = outcome_from_validation_error(exc, "Bundle")
        first = issues[0]["expression"][0] if issues else "Bundle"
        raise _fail(f"Bundle is not valid FHIR R4: {len(issues)} issue(s)", first, issues) from exc
    except TypeError as exc:
        # Some fhir.resources validators raise TypeError on a wrong JSON type (e.g. a list for a url).
        raise _fail("Bundle is not valid FHIR R4: an element has the wrong JSON type", "Bundle") from exc
    issues = check_codes(bundle, "Bundle")
    if issues:
        raise _fail(f"Bundle has {len(issues)} invalid code(s)", issues[0]["expression"][0], issues)
    return bundle


def _resolve_focus(
    header: MessageHeader, index: dict[str, Resource], event_type: EventType
) -> list[Resource]:
    focus: list[Resource] = []
    for i, ref in enumerate(header.focus or []):
        resource = resolve_reference(ref.reference, index)
        if resource is None:
            raise Unprocessable(
                f"MessageHeader.focus {ref.reference!r} is not in the Bundle",
                expression=[f"Bundle.entry[0].resource.focus[{i}]"],
            )
        focus.append(resource)
    expected = spec(event_type).focus
    if not any(r.get_resource_type() in expected for r in focus):
        raise Unprocessable(
            f"Event {event_type} needs a MessageHeader.focus of type {' or '.join(expected)}",
            expression=["Bundle.entry[0].resource.focus"],
        )
    return focus


def parse_message_bundle(body: bytes, content_type: str | None, max_bytes: int = 1_000_000) -> MessageBundle:
    """Validated MessageBundle from a `$process-message` request body, or the RelaisError to return.

    A large body is read in a worker process (shared/fhir/offload.py), so it never holds this process.
    """
    if len(body) > max_bytes:
        raise PayloadTooLarge(f"Body is {len(body)} bytes; the limit is {max_bytes}")
    check_content_type(content_type)
    return off_the_lock(len(body), read_message_bundle, body)


def read_message_bundle(body: bytes) -> MessageBundle:
    """The MessageBundle in a body whose size and media type were checked (JSON, shape, R4B, event, focus)."""
    data = parse_json(body)
    _check_shape(data)
    _check_no_empty_elements(data)
    bundle = _validate(data)
    header = bundle.entry[0].resource if bundle.entry else None
    if not isinstance(header, MessageHeader) or not bundle.id:  # _check_shape made sure of both
        raise _fail("The first entry of a message Bundle must be a MessageHeader", "Bundle.entry[0].resource")
    coding = header.eventCoding
    system, code = (coding.system, coding.code or "") if coding else (None, header.eventUri or "")
    event_type = event_type_for(system, code)
    index = index_resources(bundle)
    return MessageBundle(
        bundle=bundle,
        header=header,
        event_type=event_type,
        event_code=code,
        event_system=system,
        message_id=bundle.id,
        resources_by_reference=index,
        focus=_resolve_focus(header, index, event_type),
        raw=data,
    )
