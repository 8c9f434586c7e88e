"""Idempotent intake: a message id names one content, and what it causes has ids derived from it."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping
from typing import Any

from shared.errors import Conflict


def fingerprint(message: Mapping[str, Any]) -> str:
    """Content hash of a request, independent of key order and whitespace: same id + other hash = 409."""
    canonical = json.dumps(message, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def check_replay(stored_fingerprint: str, fingerprint_: str, message_id: str) -> None:
    """A message id already used: fine when the content is the same, a conflict otherwise."""
    if stored_fingerprint != fingerprint_:
        raise Conflict(
            f"message {message_id} was already received with different content; "
            "send a new Bundle.id for a new message",
            expression=["Bundle.id"],
        )


def derived_id(namespace: uuid.UUID, source_id: str, *parts: str) -> str:
    """Deterministic id for what a request or a timer causes, so a replay can never cause it twice."""
    return str(uuid.uuid5(namespace, "|".join((source_id, *parts))))


_SENDER_NAMESPACE = uuid.UUID("0b6f6f3e-5d0c-4c4e-9a55-2d0f4c8a7e31")


def sender_message_id(sender_org_id: str, bundle_id: str) -> str:
    """Relais' key for a hospital's message: Bundle.id is unique per sender only (two hospitals may reuse one)."""
    return str(uuid.uuid5(_SENDER_NAMESPACE, f"{sender_org_id}|{bundle_id}"))
