"""What every FHIR shape of the notifications service shares: base URLs, profiles, instants, validation."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from shared.fhir.models import Bundle, to_json

RELAIS_FHIR_BASE = "https://relais.example.org/fhir"
ORGANISATION_SYSTEM = "https://relais.example.org/fhir/sid/organisation"
CURSOR_TAG_SYSTEM = "https://relais.example.org/fhir/CodeSystem/feed-cursor"
NOTIFICATION_PROFILE = "https://relais.example.org/fhir/StructureDefinition/relais-notification"
RECEIPT_PROFILE = "https://relais.example.org/fhir/StructureDefinition/relais-read-receipt"

BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
BACKPORT_SUBSCRIPTION = BACKPORT + "backport-subscription"
BACKPORT_STATUS_R4 = BACKPORT + "backport-subscription-status-r4"
BACKPORT_FILTER = BACKPORT + "backport-filter-criteria"
BACKPORT_CONTENT = BACKPORT + "backport-payload-content"
BACKPORT_HEARTBEAT = BACKPORT + "backport-heartbeat-period"
BACKPORT_TIMEOUT = BACKPORT + "backport-timeout"
BACKPORT_TOPIC_CANONICAL = BACKPORT + "capabilitystatement-subscriptiontopic-canonical"


def instant(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def full_url(notification_id: str) -> str:
    try:
        return f"urn:uuid:{uuid.UUID(notification_id)}"
    except ValueError:
        return f"{RELAIS_FHIR_BASE}/Parameters/{notification_id}"


def validated_bundle(bundle: dict[str, Any]) -> dict[str, Any]:
    return to_json(Bundle.model_validate(bundle))
