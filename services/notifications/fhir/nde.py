"""NdE shapes (ANS "Notification d'évènements", ans.fhir.fr.nde): the per-patient Subscription a subscriber
registers (flux 1, profile nde-subscription) and the notification it receives (flux 4, profile
nde-notificationrequest, a CommunicationRequest).

Mapping onto Relais (docs/conformance.md, NdE): an NdE Subscription is a filter over the notifications Relais
already routes to the subscriber's organisation, so the care circle decides what it can ever receive. A
subscriber outside the patient's care circle is accepted like any other and receives nothing: the answer never
tells whether the organisation treats the patient (docs/architecture.md#the-patient-data-boundary). It is
registered through the one channel path (shared/channels.py) and matched only by what its subscriber has in full
(the care team), so a minimised recipient (the CPTS) can never tie the NIR it names to a pseudonymous key.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl

from pydantic import ValidationError

from services.notifications.fhir.common import ORGANISATION_SYSTEM, RELAIS_FHIR_BASE, instant
from services.notifications.fhir.subscriptions import InvalidSubscription, SubscriptionRequest
from shared.channels import NDE_CHANNEL, check_channel, may_receive, url_validator
from shared.errors import Forbidden, Unprocessable
from shared.events import TRE_R254_OID, TRE_R254_SYSTEM
from shared.fhir.encounter import patient_identity
from shared.fhir.models import CommunicationRequest, Identifier, Subscription, to_json
from shared.fhir.nde import (
    EVENT_CODES,
    EVENT_EMISSION_TIME,
    EVENT_TIME,
    EVENT_TYPE,
    NDE_BASE,
    NDE_EXTENSION_BASE,
    NOTIFICATION_PROFILE,
    SUBSCRIPTION_PROFILE,
    extension_values,
)
from shared.identifiers import FINESS, patient_key, validate_identifier
from shared.outbound import OutboundPolicy

NDE_TOPIC = "urn:relais:nde"  # SubscriptionRow.topic of an NdE Subscription
NDE_CONTENT = "nde"  # SubscriptionRow.content: deliveries are nde-notificationrequest CommunicationRequests
PATIENT_KEY_SYSTEM = "https://relais.example.org/fhir/sid/patient-key"
NOTIFICATION_SYSTEM = "https://relais.example.org/fhir/sid/notification"
SUPPORTED_CHANNELS = ("rest-hook",)
# Which stored events an NdE event type covers (corrections and cancellations included).
EVENT_PREFIX = {"ADM": "admission.", "SOR": "discharge."}
_DISPLAY = {"ADM": "Admission d'un patient", "SOR": "Sortie d'un patient de l'établissement de santé"}


def _where(name: str) -> list[str]:
    return [f"Subscription.extension('{name}')"]


def _contained(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f"#{r['id']}": r for r in data.get("contained") or [] if isinstance(r, dict) and r.get("id")}


def _referenced(data: dict[str, Any], name: str, required: bool = True) -> dict[str, Any] | None:
    values = extension_values(data.get("extension"), NDE_EXTENSION_BASE + name)
    ref = values[0].get("reference") if len(values) == 1 and isinstance(values[0], dict) else None
    found = _contained(data).get(ref) if isinstance(ref, str) else None
    if found is None and required:
        raise Unprocessable(
            f"the nde-subscription needs one {name} extension pointing at a contained resource (\"#id\")",
            expression=_where(name),
        )
    return found


def _event_code(data: dict[str, Any]) -> str:
    codes = {
        str(c.get("code", "")).upper()
        for v in extension_values(data.get("extension"), EVENT_TYPE)
        if isinstance(v, dict)
        for c in v.get("coding") or []
        if isinstance(c, dict) and c.get("system") in (TRE_R254_SYSTEM, TRE_R254_OID)
    }
    criteria = data.get("criteria")
    if not isinstance(criteria, str) or not criteria.startswith("CommunicationRequest?"):
        raise Unprocessable(
            "criteria must be a search on CommunicationRequest, e.g. CommunicationRequest?event-type=SOR",
            expression=["Subscription.criteria"],
        )
    asked = {v.upper() for k, v in parse_qsl(criteria.split("?", 1)[1]) if k == "event-type"}
    codes = (codes & asked) if codes and asked else (codes or asked)
    if len(codes) != 1 or next(iter(codes)) not in EVENT_CODES:
        raise Unprocessable(
            "the Subscription must name one TRE_R254 event type Relais notifies: ADM or SOR "
            "(event-type extension and criteria agreeing)",
            issue_code="not-supported",
            expression=_where("EventType"),
        )
    return codes.pop()


def _check_subscriber(subscriber: dict[str, Any], caller_org_id: str) -> None:
    """The subscriber is a person of the caller's organisation, or the caller's organisation itself."""
    kind = subscriber.get("resourceType")
    if kind in ("Practitioner", "PractitionerRole"):
        return  # deliveries go to the caller's organisation whatever the person: nothing to forge here
    if kind != "Organization":
        raise Unprocessable(
            f"a {kind} subscriber is not supported: Relais notifies organisations and their professionals",
            issue_code="not-supported",
            expression=_where("Subscriber"),
        )
    values = {str(i.get("value")) for i in subscriber.get("identifier") or [] if isinstance(i, dict)}
    if caller_org_id not in values:
        raise Forbidden(
            "the subscriber Organization must be your own organisation (its identifier)",
            expression=_where("Subscriber"),
        )


def _patient_key(patient: dict[str, Any], secret: str) -> str:
    identifiers = []
    for raw in patient.get("identifier") or []:
        try:
            identifiers.append(Identifier.model_validate(raw))
        except (ValidationError, TypeError):
            continue
    identity = patient_identity(identifiers, "Subscription.contained(Patient).identifier")
    return patient_key(identity.system, identity.value, secret)


def _declarant_finess(declarant: dict[str, Any] | None) -> str | None:
    for identifier in (declarant or {}).get("identifier") or []:
        if isinstance(identifier, dict) and identifier.get("system") == FINESS and identifier.get("value"):
            return validate_identifier(FINESS, str(identifier["value"]))
    return None  # a declarant without FINESS does not narrow the subscription (documented)


def parse_nde_subscription(
    body: Any, policy: OutboundPolicy, secret: str, caller_org_id: str
) -> SubscriptionRequest:
    """An nde-subscription as a Relais subscription filter (patient key, event type, declarant, period)."""
    if not isinstance(body, dict) or body.get("resourceType") != "Subscription":
        raise Unprocessable("expected a Subscription resource (profile nde-subscription)", expression=["Subscription"])
    body = {k: v for k, v in body.items() if k not in ("id", "text")}
    try:
        resource = to_json(Subscription.model_validate(body))
    except ValidationError as exc:
        raise InvalidSubscription(exc) from exc
    except TypeError as exc:
        raise Unprocessable("the Subscription is not valid FHIR R4", expression=["Subscription"]) from exc
    channel = resource.get("channel") or {}
    if channel.get("type") not in SUPPORTED_CHANNELS:
        raise Unprocessable(
            f"channel {channel.get('type')!r} is not supported: Relais delivers NdE notifications by rest-hook "
            "(or in the organisation's feed, /notifications/feed); e-mail, SMS and messaging are not offered",
            issue_code="not-supported",
            expression=["Subscription.channel.type"],
        )
    # The one channel path: the endpoint by the outbound policy, channel.header by the one header validation.
    checked = check_channel(NDE_CHANNEL, channel.get("endpoint") or "", channel.get("header"),
                            url_validator(policy))
    code = _event_code(resource)
    _check_subscriber(_referenced(resource, "subscriber") or {}, caller_org_id)
    patient = _referenced(resource, "subject")
    if patient is None or patient.get("resourceType") != "Patient":
        raise Unprocessable("the subject extension must point at the contained Patient", expression=_where("Subject"))
    filters: dict[str, str] = {"patient": _patient_key(patient, secret), "code": code}
    if (finess := _declarant_finess(_referenced(resource, "declarant", required=False))) is not None:
        filters["sender"] = finess
    for name, value in (("start", _start(resource)), ("end", resource.get("end"))):
        if value:
            filters[name] = str(value)
    return SubscriptionRequest(NDE_TOPIC, [filters], checked, NDE_CONTENT, None, resource)


def _start(resource: dict[str, Any]) -> str | None:
    values = extension_values(resource.get("extension"), NDE_EXTENSION_BASE + "start")
    return str(values[0]) if values else None


def _moment(value: str | None) -> datetime | None:
    try:
        moment = datetime.fromisoformat(value) if value else None
    except ValueError:
        return None
    return moment if moment is None or moment.tzinfo is not None else None


def nde_matches(filters: list[dict[str, str]], notification: Any, now: datetime) -> bool:
    """The notification is about the subscribed patient and event type, from the declarant, within the period,
    and its subscriber has it as a member of the care team: a subscriber with a lesser share (the CPTS's
    minimised notice) is never matched, so nothing links the NIR it named to a pseudonymous key."""
    if not may_receive(NDE_CHANNEL, notification.role, notification.detail):
        return False
    f = filters[0] if filters else {}
    if notification.patient_key != f.get("patient"):
        return False
    if not str(notification.event).startswith(EVENT_PREFIX.get(f.get("code", ""), "\0")):
        return False
    if f.get("sender") and notification.sender != f["sender"]:
        return False
    start, end = _moment(f.get("start")), _moment(f.get("end"))
    return (start is None or start <= now) and (end is None or now < end)


def subscription_resource(row: Any) -> dict[str, Any]:
    resource = {**row.resource, "id": row.id, "meta": {"profile": [SUBSCRIPTION_PROFILE]}}
    resource["status"] = row.status
    if row.error:
        resource["error"] = row.error
    return to_json(Subscription.model_validate(resource))


def _code_of(event: str) -> str:
    return "ADM" if event.startswith("admission.") else "SOR"


def _patient(notification: Any) -> dict[str, Any]:
    """The full-detail recipient gets the hospital's Patient; any other only Relais' pseudonymous key."""
    if notification.detail == "full":
        for entry in (notification.payload or {}).get("entry") or []:
            resource = entry.get("resource") if isinstance(entry, dict) else None
            if isinstance(resource, dict) and resource.get("resourceType") == "Patient":
                return {**resource, "id": "patient"}
    patient: dict[str, Any] = {"resourceType": "Patient", "id": "patient"}
    if notification.patient_key:
        patient["identifier"] = [{"system": PATIENT_KEY_SYSTEM, "value": notification.patient_key}]
    return patient


def notification_request(subscription: Any, notification: Any) -> dict[str, Any]:
    """A stored notification as an nde-notificationrequest; status completed once read ($ack), revoked if
    the hospital cancelled the event."""
    code = _code_of(notification.event)
    subscriber = dict(_contained(subscription.resource).get(_subscriber_ref(subscription.resource)) or {})
    subscriber = subscriber or {"resourceType": "Organization", "id": "subscriber"}
    subscriber["id"] = "recipient"
    requester: dict[str, Any] = {"resourceType": "Organization", "id": "declarant"}
    if notification.sender_org_id:
        requester["identifier"] = [{"system": ORGANISATION_SYSTEM, "value": notification.sender_org_id}]
    status = "active"
    if notification.event.endswith(".cancelled"):
        status = "revoked"
    elif getattr(notification, "read_at", None) is not None:
        status = "completed"
    extensions: list[dict[str, Any]] = [
        {
            "url": EVENT_TYPE,
            "valueCodeableConcept": {"coding": [{"system": TRE_R254_SYSTEM, "code": code, "display": _DISPLAY[code]}]},
        }
    ]
    if notification.sent_at:
        extensions.append({"url": EVENT_EMISSION_TIME, "valueDateTime": notification.sent_at})
    if (event_time := _event_time(notification)) is not None:
        extensions.append({"url": EVENT_TIME, "valueDateTime": event_time})
    resource = {
        "resourceType": "CommunicationRequest",
        "id": notification.id,
        "meta": {"profile": [NOTIFICATION_PROFILE]},
        "contained": [requester, _patient(notification), subscriber],
        "extension": extensions,
        "identifier": [{"system": NOTIFICATION_SYSTEM, "value": notification.id}],
        "basedOn": [{"reference": f"{RELAIS_FHIR_BASE}{NDE_BASE}/Subscription/{subscription.id}"}],
        "status": status,
        "medium": [{"text": "rest-hook"}],
        "subject": {"reference": "#patient"},
        "payload": [{"contentString": f"{_DISPLAY[code]} ({notification.event})"}],
        "authoredOn": instant(notification.received_at),
        "requester": {"reference": "#declarant"},
        "recipient": [
            {
                "extension": [{"url": NDE_EXTENSION_BASE + "recipient-endpoint", "valueUrl": subscription.endpoint}],
                "reference": "#recipient",
            }
        ],
    }
    return to_json(CommunicationRequest.model_validate(resource))


def _subscriber_ref(resource: dict[str, Any]) -> str:
    values = extension_values(resource.get("extension"), NDE_EXTENSION_BASE + "subscriber")
    ref = values[0].get("reference") if values and isinstance(values[0], dict) else None
    return ref if isinstance(ref, str) else ""


def _event_time(notification: Any) -> str | None:
    """The event's own time when the payload says it (minimised payloads carry the event times)."""
    payload = notification.payload or {}
    for key in ("occurred_at", "event_time", "admitted_at", "discharged_at"):
        if isinstance(payload.get(key), str) and "T" in payload[key]:
            return str(payload[key])
    return None
