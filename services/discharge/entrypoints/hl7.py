"""The discharge door of the HL7 v2 listener: the equivalent FHIR message read into a discharge command."""

from __future__ import annotations

from services.discharge.commands import DischargeMessage
from services.discharge.intake import discharge_command
from services.discharge.messagebus import MessageBus
from shared.doors import Caller, Door, hospital_door
from shared.fhir.intake import parse_message_bundle

FHIR_JSON = "application/fhir+json"


def discharge_door(bus: MessageBus) -> Door[DischargeMessage]:
    settings = bus.deps.settings

    def read(raw: bytes, caller: Caller) -> DischargeMessage:
        message = parse_message_bundle(raw, FHIR_JSON, settings.max_body_bytes)
        return discharge_command(message, caller.organisation_id, settings.max_followups)

    return hospital_door(
        "hl7v2-discharge", read, bus.handle, record_refusal=bus.deps.record_refusal, max_bytes=settings.max_body_bytes
    )
