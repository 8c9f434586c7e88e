"""HL7 v2.5 ADT in the IHE PAM France profile over MLLP: a door of the door kernel (shared.doors).

message: decoding (MSH-18) and parsing (python-hl7); pam: the trigger table and the equivalent FHIR message;
ack: AA/AE/AR and the enhanced mode's CA/CR; store: ACKs per hospital and MSH-10; door: the chain;
mllp: the listener. docs/hl7v2.md describes them for hospitals.
"""

from __future__ import annotations

from typing import Any

from shared.doors import Door
from shared.hl7v2 import pam
from shared.hl7v2.door import Hl7Door, Senders
from shared.hl7v2.settings import MllpSettings
from shared.hl7v2.store import AckStore
from shared.runtime import Runtime

__all__ = ["build_hl7_door"]


def build_hl7_door(runtime: Runtime, admissions: Door[Any], discharge: Door[Any], settings: MllpSettings) -> Hl7Door:
    """The HL7 v2 door of a hosting service: ACKs in its database, discharges to `discharge`, the rest to
    `admissions` (each a door of the kernel built by its service)."""

    def door_for(action: pam.Action) -> Door[Any]:
        return discharge if action in pam.DISCHARGE_ACTIONS else admissions

    return Hl7Door(
        Senders(runtime.directory, settings.bindings_refresh_seconds),
        AckStore(runtime.engine),
        door_for,
        runtime.record_refusal,
        settings.max_message_bytes,
    )
