"""Hospital doors (DESIGN §3, "Doors"): one factory builds a door from a reader and a command handler, and every
door runs the same chain, which no door can skip:

1. the caller is bound to one hospital (a token's organisation, an MLLP peer's certificate or network and the
   facility it names) and must have the hospital role;
2. the body is bounded (size) before anything reads it;
3. the facts are read by the door's reader, which ends in the shared reader of hospital messages
   (`shared.fhir.encounter.read_encounter_message`), so identity rules and the caller check are the same code;
4. idempotency per sender: the command's message id is `sender_message_id(hospital, sender's id)`, so two
   hospitals may reuse an id and a replay from one is processed once (the handlers store their answer);
5. a deadline: a read that overran it is not handed on (the sender retries; nothing was written);
6. refusals (another hospital's message, a wrong role, an unbound sender) are audited in their own transaction.

The FHIR `$process-message` and NdE doors build their commands with the same readers; the HL7 v2 door
(`shared.hl7v2.door`) is built here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from shared.audit import RefusalRecorder
from shared.errors import Forbidden, PayloadTooLarge, RelaisError
from shared.events import Role
from shared.idempotence import sender_message_id

__all__ = ["Caller", "DeadlineExceeded", "Door", "DoorLimits", "hospital_door", "message_key"]

CommandT = TypeVar("CommandT")


@dataclass(frozen=True)
class Caller:
    """Who knocks at a door: the organisation it is bound to, its role, the channel and (for audit) the peer."""

    organisation_id: str
    role: Role
    channel: str  # "fhir", "nde", "mllp", "mllp+tls"
    peer: str | None = None


@dataclass(frozen=True)
class DoorLimits:
    max_bytes: int
    deadline_seconds: float


class DeadlineExceeded(RelaisError):
    """The read took longer than the door's deadline: nothing was handed on, the sender may retry."""

    status_code = 503
    issue_code = "timeout"


def message_key(caller: Caller, sender_message_id_: str) -> str:
    """Relais' idempotency key for a hospital's message id (unique per sender only)."""
    return sender_message_id(caller.organisation_id, sender_message_id_)


@dataclass(frozen=True)
class Door(Generic[CommandT]):
    """A hospital door: `read` turns the raw message into a command (facts read, caller checked); `handle` runs
    it (one unit of work, committed before it returns). Every door takes bytes: what the wire carried."""

    name: str
    read: Callable[[bytes, Caller], CommandT]
    handle: Callable[[CommandT], Any]
    limits: DoorLimits
    record_refusal: RefusalRecorder

    def refuse(self, caller: Caller | None, reason: str, **detail: Any) -> None:
        """Audit a refusal at this door (its own transaction; patient data never goes in `detail`)."""
        self.record_refusal(
            f"{caller.channel if caller else 'door'} {self.name}",
            organisation_id=caller.organisation_id if caller else None,
            role=caller.role.value if caller else None,
            resource=caller.peer if caller else None,
            reason=reason,
            detail=detail or None,
        )

    def read_command(self, raw: bytes, caller: Caller) -> CommandT:
        """Steps 1 to 5 of the chain: the command, or a RelaisError (refusals audited)."""
        if caller.role is not Role.HOSPITAL:
            self.refuse(caller, "role")
            raise Forbidden(f"this door is for hospitals; your organisation is a {caller.role.value}")
        if len(raw) > self.limits.max_bytes:
            raise PayloadTooLarge(f"the message is larger than {self.limits.max_bytes} bytes")
        started = time.monotonic()
        try:
            command = self.read(raw, caller)
        except Forbidden:
            self.refuse(caller, "another hospital's message")
            raise
        if time.monotonic() - started > self.limits.deadline_seconds:
            raise DeadlineExceeded(f"reading the message took longer than {self.limits.deadline_seconds} s")
        return command

    def __call__(self, raw: bytes, caller: Caller) -> Any:
        return self.handle(self.read_command(raw, caller))


def hospital_door(
    name: str,
    read: Callable[[bytes, Caller], CommandT],
    handle: Callable[[CommandT], Any],
    *,
    record_refusal: RefusalRecorder,
    max_bytes: int,
    deadline_seconds: float = 30.0,
) -> Door[CommandT]:
    """The one way to build a hospital door."""
    return Door(name, read, handle, DoorLimits(max_bytes, deadline_seconds), record_refusal)
