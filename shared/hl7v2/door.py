"""The HL7 v2 door: one frame in, the ACKs out, through the door kernel's chain (`shared.doors`).

Order of the checks, each with its answer:
1. MSH readable (separators, MSH-10): else no ACK can name the message, the connection is closed.
2. Who is sending: the TLS certificate's hospital, or the hospitals whose registered networks hold the peer; MSH-4
   must be one of that hospital's facilities (else AR, audited).
3. Already answered (same hospital, same MSH-10): the stored ACKs, nothing processed again.
4. Readable (MSH-18 charset, python-hl7), an ADT message, a trigger PAM France defines: else AR.
5. The trigger's action (pam.TRIGGERS): none -> AA; else the equivalent FHIR message through the door of the
   service that owns it; what that door refuses as not applicable (422/409/400) -> AE naming the field.
6. AA or AE only once the handler committed; then the ACK is stored and sent.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from shared.audit import RefusalRecorder
from shared.auth import Directory, Hl7Binding
from shared.doors import Caller, Door
from shared.errors import Conflict, RelaisError, Unprocessable
from shared.events import Role
from shared.hl7v2 import pam
from shared.hl7v2.ack import AckOutcome, acks_for
from shared.hl7v2.message import Hl7Header, Hl7Message, NotReadable, parse_message, read_header
from shared.hl7v2.store import AckStore

__all__ = ["Hl7Door", "Peer", "Senders"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Peer:
    """The other end of an MLLP connection: its address and, over TLS, the hospital its certificate names."""

    address: str
    certificate_org: str | None = None
    tls: bool = False

    @property
    def channel(self) -> str:
        return "mllp+tls" if self.tls else "mllp"


class Senders:
    """Which hospital an MLLP peer may speak for (directory bindings, re-read every `refresh_seconds`)."""

    def __init__(self, directory: Directory, refresh_seconds: float = 30.0) -> None:
        self.directory = directory
        self.refresh_seconds = refresh_seconds
        self._lock = threading.Lock()
        self._loaded_at = float("-inf")
        self._bindings: list[Hl7Binding] = []
        self._hospitals: frozenset[str] = frozenset()

    def bindings(self) -> list[Hl7Binding]:
        with self._lock:
            if time.monotonic() - self._loaded_at > self.refresh_seconds:
                self._bindings = self.directory.hl7_bindings()
                # Only a hospital may send (a binding left on an organisation of another role counts for nothing).
                self._hospitals = frozenset(
                    b.organisation_id for b in self._bindings
                    if (found := self.directory.get(b.organisation_id)) is not None and found.role is Role.HOSPITAL
                )
                self._loaded_at = time.monotonic()
            return self._bindings

    def refresh(self) -> None:
        with self._lock:
            self._loaded_at = float("-inf")

    def candidates(self, peer: Peer) -> list[Hl7Binding]:
        """The hospitals this peer may speak for: its certificate's, else those whose networks hold its address."""
        if peer.certificate_org is not None:
            return [b for b in self.bindings() if b.organisation_id == peer.certificate_org]
        try:
            address = ipaddress.ip_address(peer.address)
        except ValueError:
            return []
        return [b for b in self.bindings() if any(address in ipaddress.ip_network(n) for n in b.networks)]

    def may_connect(self, peer: Peer) -> bool:
        return bool(self.candidates(peer))

    def bind(self, peer: Peer, facility: str) -> Hl7Binding | None:
        for binding in self.candidates(peer):
            if binding.organisation_id in self._hospitals and facility in binding.facilities:
                return binding
        return None


# What a door of the kernel answers for an action, given the message, facts and caller.
DoorFor = Callable[[pam.Action], Door[Any]]
ADMISSION_ACTIONS = frozenset({pam.Action.ADMIT, pam.Action.MOVE, pam.Action.CANCEL_ADMIT, pam.Action.REVISE_ADMIT})


class Hl7Door:
    def __init__(
        self, senders: Senders, store: AckStore, door_for: DoorFor, record_refusal: RefusalRecorder, max_bytes: int
    ) -> None:
        self.senders = senders
        self.store = store
        self.door_for = door_for
        self.record_refusal = record_refusal
        self.max_bytes = max_bytes

    def refuse(self, peer: Peer, organisation_id: str | None, reason: str, **detail: Any) -> None:
        self.record_refusal(
            f"{peer.channel} hl7v2",
            organisation_id=organisation_id,
            role=Role.HOSPITAL.value if organisation_id else None,
            resource=peer.address,
            reason=reason,
            detail=detail or None,
        )

    def answer(self, frame: bytes, peer: Peer) -> list[bytes] | None:
        """The ACK frames to send for this frame, or None to close the connection (no MSH to answer to)."""
        try:
            header = read_header(frame)
        except NotReadable as exc:
            if exc.header is None:
                self.refuse(peer, None, "unreadable HL7 v2 frame")
                return None
            header = exc.header
        binding = self.senders.bind(peer, header.sending_facility)
        if binding is None:
            self.refuse(peer, None, "unbound sending facility", facility=header.sending_facility[:100])
            return self._encode(header, acks_for(header, AckOutcome("AR", "sending facility not bound", "MSH-4")))
        try:
            return self._encode(header, self._acks(frame, header, binding.organisation_id, peer))
        except Exception as exc:  # noqa: BLE001 - transient (database, bus): no ACK, so the sender sends again
            log.warning("hl7v2: no ACK for a message of %s: %s", binding.organisation_id, type(exc).__name__)
            return None

    def _acks(self, frame: bytes, header: Hl7Header, hospital: str, peer: Peer) -> list[str]:
        """The stored ACKs of this control id, else the message's outcome, stored unless it is an AR."""
        stored = self.store.get(hospital, header.control_id)
        if stored is not None:
            return stored
        outcome = self._outcome(frame, Caller(hospital, Role.HOSPITAL, peer.channel, peer.address))
        acks = acks_for(header, outcome)
        if outcome.code != "AR":
            acks = self.store.put(hospital, header.control_id, outcome.code, acks)
        return acks

    @staticmethod
    def _encode(header: Hl7Header, acks: list[str]) -> list[bytes]:
        return [ack.encode(header.codec, errors="replace") for ack in acks]

    def _outcome(self, frame: bytes, caller: Caller) -> AckOutcome:
        if len(frame) > self.max_bytes:
            return AckOutcome("AR", f"message larger than {self.max_bytes} bytes", "MSH", "207")
        try:
            message = parse_message(frame)
        except NotReadable as exc:
            return AckOutcome("AR", exc.reason, exc.field, "102")
        header = message.header
        if header.message_type.upper() != "ADT":
            return AckOutcome("AR", f"{header.message_type[:10]} is not an ADT message", "MSH-9", "200")
        if header.trigger.upper() not in pam.TRIGGERS:
            return AckOutcome("AR", f"trigger {header.trigger[:10]} is not a PAM France ADT event", "MSH-9", "201")
        if message.segment("PID") is None and header.trigger.upper() not in ("A40", "A47"):
            return AckOutcome("AR", "the PID segment is missing", "PID", "100")
        try:
            return self._apply(message, caller)
        except RelaisError as exc:
            if exc.status_code >= 500 or exc.status_code == 429:
                raise  # transient: not an answer about the message
            return _error_outcome(exc)

    def _apply(self, message: Hl7Message, caller: Caller) -> AckOutcome:
        facts = pam.read_facts(message)
        action = facts.action
        if action is pam.Action.UPDATE:
            action = _update_action(facts)
        if action is pam.Action.NONE:
            return AckOutcome("AA", f"{facts.trigger}: nothing to route")
        try:
            self._run(message, facts, action, caller)
        except Conflict as exc:
            if action is not pam.Action.MOVE or exc.expression != ["Bundle.id"]:
                raise
            # This message id was recorded as the stay's admission (below); its ACK was lost: the same answer.
            self._run(message, facts, pam.Action.ADMIT, caller)
        except Unprocessable as exc:
            if not _unknown_stay(exc):
                raise
            if action is pam.Action.REVISE_ADMIT or action is pam.Action.REVISE_DISCHARGE:
                return AckOutcome("AA", f"{facts.trigger}: update of a stay Relais never received; nothing to route")
            if action is not pam.Action.MOVE or facts.trigger == "A12":
                raise
            # A movement of a stay Relais never heard of is the first it hears of it: the stay is recorded.
            self._run(message, facts, pam.Action.ADMIT, caller)
        return AckOutcome("AA", f"{facts.trigger}: recorded")

    def _run(self, message: Hl7Message, facts: pam.Hl7Facts, action: pam.Action, caller: Caller) -> None:
        bundle = pam.message_bundle(message, facts, action, caller.organisation_id)
        door = self.door_for(action)
        door(json.dumps(bundle, ensure_ascii=False).encode("utf-8"), caller)


def _update_action(facts: pam.Hl7Facts) -> pam.Action:
    """A08/Z99: an update of the discharge when ZBE-6 names A03; of a pre-admission, nothing; else the stay."""
    if facts.original_trigger == "A03":
        return pam.Action.REVISE_DISCHARGE
    if facts.original_trigger in ("A05", "A21", "A22", "A54"):
        return pam.Action.NONE
    return pam.Action.REVISE_ADMIT


def _unknown_stay(exc: Unprocessable) -> bool:
    # The handlers' "no admission/discharge is known for encounter ..." (check_correction_target).
    return exc.expression == ["Encounter.identifier"] and " is known for encounter " in exc.diagnostics


def _error_outcome(exc: RelaisError) -> AckOutcome:
    """A refusal of the equivalent FHIR message as an ACK: AE naming the v2 field (AR for a wrong sender)."""
    path = (exc.expression or [""])[0]
    field = next((v2 for fhir_path, v2 in pam.FIELD_OF.items() if path.startswith(fhir_path)), "MSH-9")
    code = "AR" if exc.status_code in (401, 403) else "AE"
    if isinstance(exc, Unprocessable) and _unknown_stay(exc):
        error = "204"  # unknown key identifier: the stay (PID-18) Relais never received
    else:
        error = "101" if " is required" in exc.diagnostics else "207"
    return AckOutcome(code, _safe_text(exc), field, error)


def _safe_text(exc: RelaisError) -> str:
    """The refusal's text for the ACK: the class of refusal, never values (they may name the patient)."""
    return f"{type(exc).__name__}: {exc.diagnostics[:160]}"
