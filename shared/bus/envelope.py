"""The message envelope carried on every topic; metadata lives in the value (Kafka 0.9 has no headers)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

# Under the Kafka producer's default max_request_size (1 MiB), with room for the record's own overhead.
DEFAULT_MAX_MESSAGE_BYTES = 900_000


class PoisonMessage(Exception):
    """A message no retry will ever make handleable (undecodable, or rejected by its handler)."""


@dataclass(frozen=True)
class Envelope:
    type: str
    key: str
    data: dict[str, Any]
    source: str
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    time: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    def to_json(self) -> str:
        body = {"id": self.id, "type": self.type, "source": self.source, "time": self.time, "key": self.key}
        return json.dumps({**body, "data": self.data}, separators=(",", ":"), ensure_ascii=False, default=str)

    @classmethod
    def from_bytes(cls, raw: bytes | str | None) -> Envelope:
        try:
            body = json.loads(raw) if raw is not None else None
            if not isinstance(body, dict):
                raise TypeError("an envelope is a JSON object")
            return cls(
                id=str(body["id"]),
                type=str(body["type"]),
                key=str(body.get("key") or ""),
                data=dict(body.get("data") or {}),
                source=str(body.get("source") or ""),
                time=str(body.get("time") or ""),
            )
        except (ValueError, TypeError, KeyError) as exc:
            raise PoisonMessage(f"undecodable envelope: {exc!r}") from exc


def encoded_envelope(envelope: Envelope, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> str:
    """The envelope's JSON, or Unprocessable (422) if the bus could never carry it (too large, unencodable).

    Intake calls this (through `Outbox.add`) so an over-large message is refused to its sender, instead of
    becoming an outbox row no broker accepts."""
    from shared.errors import Unprocessable

    value = envelope.to_json()
    try:
        size = len(value.encode())
    except UnicodeEncodeError as exc:
        raise Unprocessable("the message holds characters that cannot be encoded (lone surrogates)") from exc
    if size > max_bytes:
        raise Unprocessable(
            f"the message is too large to be forwarded ({size} bytes encoded; the limit is {max_bytes})",
            issue_code="too-long",
        )
    return value
