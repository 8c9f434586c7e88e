"""Builders for the FHIR messages Relais sends: event messages and `$process-message` responses."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from typing import Any, Literal

from shared.clock import now_instant
from shared.events import RELAIS_EVENT_SYSTEM, EventType, spec
from shared.fhir.full_urls import full_url_for, is_uuid
from shared.fhir.intake import check_codes
from shared.fhir.models import Bundle, MessageHeader, Resource, to_json

RELAIS_ENDPOINT = "https://relais.example.org/fhir"  # default MessageHeader.source.endpoint of Relais
# Task.code of every Task Relais serves (handoff, orientation, follow-up, change of treating team).
TASK_CODE_SYSTEM = f"{RELAIS_ENDPOINT}/CodeSystem/task-code"
ResponseCode = Literal["ok", "transient-error", "fatal-error"]


def new_id() -> str:
    return str(uuid.uuid4())


def _entry(resource: dict[str, Any]) -> dict[str, Any]:
    return {"fullUrl": full_url_for(resource), "resource": resource}


def _reference_to(entry: dict[str, Any]) -> dict[str, str]:
    return {"reference": entry["fullUrl"]}


def _destinations(destination: str | dict | Sequence[str | dict] | None) -> list[dict[str, Any]]:
    if destination is None:
        return []
    items = [destination] if isinstance(destination, str | dict) else list(destination)
    return [d if isinstance(d, dict) else {"endpoint": d} for d in items]


def _validated(bundle: dict[str, Any], known: Sequence[Resource] = ()) -> dict[str, Any]:
    # building wrong FHIR is a programming error: fail loudly here, not at the receiver
    entries = bundle["entry"]
    if known:
        # Entries 1..len(known) are resources validated (model and codes) at intake: the Bundle is validated
        # around those models rather than from their JSON again (fhir.resources takes a model as it is).
        shell = [{"fullUrl": e["fullUrl"], "resource": m} for e, m in zip(entries[1:], known, strict=False)]
        model = Bundle.model_validate({**bundle, "entry": [entries[0], *shell, *entries[1 + len(known) :]]})
        unchecked = {id(m) for m in known}
        bad_codes = check_codes(model.model_copy(update={"entry": None}), "Bundle")
        for i, entry in enumerate(model.entry or []):
            if entry.resource is not None and id(entry.resource) not in unchecked:
                bad_codes += check_codes(entry.resource, f"Bundle.entry[{i}].resource")
    else:
        model = Bundle.model_validate(bundle)
        bad_codes = check_codes(model, "Bundle")
    if bad_codes:
        raise ValueError(f"Built Bundle has invalid codes: {bad_codes}")
    # Serialising the model costs more than validating it: when the dict we validated is already plain
    # FHIR JSON (no None, no empty element, JSON types only), it is the answer as it stands.
    return bundle if _plain_json(bundle) else to_json(model)


def _plain_json(node: Any) -> bool:
    if isinstance(node, str | bool | int | float):
        return True
    if isinstance(node, dict):
        return bool(node) and all(isinstance(k, str) and v is not None and _plain_json(v) for k, v in node.items())
    if isinstance(node, list):
        return bool(node) and all(v is not None and _plain_json(v) for v in node)
    return False


def event_coding(event_type: EventType | str) -> dict[str, str]:
    event_spec = spec(event_type)
    return {"system": RELAIS_EVENT_SYSTEM, "code": event_spec.code, "display": event_spec.description}


def message_bundle(
    event_type: EventType | str,
    *,
    source_endpoint: str,
    focus: Sequence[dict[str, Any]],
    sender: dict[str, Any] | None = None,
    destination: str | dict | Sequence[str | dict] | None = None,
    extra_resources: Iterable[dict[str, Any]] = (),
    message_id: str | None = None,
    timestamp: str | None = None,
    sender_event: dict[str, Any] | None = None,
    validated_models: Sequence[Resource] = (),
) -> dict[str, Any]:
    """A validated FHIR message Bundle: MessageHeader first (Relais event code), then focus and extras.

    `sender_event`: the eventCoding of the hospital message being forwarded; it stays the header's event and
    Relais' own code goes into MessageHeader.meta.tag (a receiver may key on either).

    `sender` is either a Reference dict or a resource dict (then bundled and referenced).
    Bundle.id and MessageHeader.id are both the message id.
    `validated_models`: the models focus and extra_resources were read from (same order), already validated
    at intake, so they are not validated again from their JSON.
    """
    if not focus:
        raise ValueError("a message needs at least one focus resource")
    mid = message_id or new_id()
    focus_entries = [_entry(r) for r in focus]
    extra_entries = [_entry(r) for r in extra_resources]
    if validated_models and len(validated_models) != len(focus_entries) + len(extra_entries):
        raise ValueError("validated_models must match focus and extra_resources one to one")
    header: dict[str, Any] = {
        "resourceType": "MessageHeader",
        "id": mid,
        "eventCoding": event_coding(event_type),
        "source": {"name": "Relais", "endpoint": source_endpoint},
        "focus": [_reference_to(e) for e in focus_entries],
    }
    if sender_event and sender_event.get("code"):
        header["meta"] = {"tag": [header["eventCoding"]]}
        header["eventCoding"] = {k: v for k, v in sender_event.items() if k in ("system", "code", "display")}
    if destinations := _destinations(destination):
        header["destination"] = destinations
    if sender is not None:
        if "resourceType" in sender:
            sender_entry = _entry(sender)
            extra_entries.append(sender_entry)
            header["sender"] = _reference_to(sender_entry)
        else:
            header["sender"] = sender
    MessageHeader.model_validate(header)  # fail on the header first: clearer than a Bundle-wide error
    return _validated(
        {
            "resourceType": "Bundle",
            "id": mid,
            "type": "message",
            "timestamp": timestamp or now_instant(),
            "entry": [
                {
                    "fullUrl": f"urn:uuid:{mid}" if is_uuid(mid) else f"urn:uuid:{new_id()}",
                    "resource": header,
                },
                *focus_entries,
                *extra_entries,
            ],
        },
        validated_models,
    )


def _header_dict(request_header: MessageHeader | dict[str, Any] | None) -> dict[str, Any]:
    if request_header is None:
        return {}
    if isinstance(request_header, MessageHeader):
        return to_json(request_header)
    return request_header


def message_response(
    request_message_id: str,
    request_header: MessageHeader | dict[str, Any] | None,
    code: ResponseCode,
    outcome: dict[str, Any] | None = None,
    *,
    source_endpoint: str = RELAIS_ENDPOINT,
    message_id: str | None = None,
    timestamp: str | None = None,
) -> dict[str, Any]:
    """The response message to a processed message: same event, response.identifier = the request's id.

    R4 defines response.identifier as the request's MessageHeader.id; when the header has none we use the
    request Bundle.id (Relais' message id). The OperationOutcome, if any, is an entry named by details.
    """
    request = _header_dict(request_header)
    mid = message_id or new_id()
    event = request.get("eventCoding")
    header: dict[str, Any] = {
        "resourceType": "MessageHeader",
        "id": mid,
        **({"eventCoding": event} if event else {"eventUri": request.get("eventUri", RELAIS_EVENT_SYSTEM)}),
        "source": {"name": "Relais", "endpoint": source_endpoint},
        "response": {"identifier": request.get("id") or request_message_id, "code": code},
    }
    # reply to whoever sent the request
    if request_source := (request.get("source") or {}).get("endpoint"):
        header["destination"] = [{"endpoint": request_source}]
    entries: list[dict[str, Any]] = [{"fullUrl": f"urn:uuid:{new_id()}", "resource": header}]
    if outcome is not None:
        outcome_entry = {"fullUrl": f"urn:uuid:{new_id()}", "resource": outcome}
        header["response"]["details"] = {"reference": outcome_entry["fullUrl"]}
        entries.append(outcome_entry)
    return _validated(
        {
            "resourceType": "Bundle",
            "id": mid,
            "type": "message",
            "timestamp": timestamp or now_instant(),
            "entry": entries,
        }
    )
