"""The fullUrl Relais gives each resource it sends, known to intake (which rewrites forwarded references to it)
and to the builders (which give it): a module of its own, so neither imports the other for it."""

from __future__ import annotations

import uuid
from typing import Any

_FULL_URL_NAMESPACE = uuid.UUID("3c7d2f0e-6b1a-4f7e-8d2c-5a9e1b4c7f20")


def is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def full_url_for(resource: dict[str, Any]) -> str:
    """The fullUrl Relais gives a resource it sends: urn:uuid of its id when a UUID, else derived from Type/id,
    so references rewritten to it at intake (shared.fhir.intake.forwardable) stay resolvable."""
    rid = resource.get("id")
    if rid and is_uuid(rid):
        return f"urn:uuid:{rid}"
    if rid:
        key = f"{resource.get('resourceType')}/{rid}"
        return f"urn:uuid:{uuid.uuid5(_FULL_URL_NAMESPACE, key)}"
    return f"urn:uuid:{uuid.uuid4()}"
