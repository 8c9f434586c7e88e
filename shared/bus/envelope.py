"""The message envelope carried on every topic; metadata lives in the value (Kafka 0.9 has no headers)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


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
