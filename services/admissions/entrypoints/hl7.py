"""The admissions door of the HL7 v2 listener: the equivalent FHIR message read into an admission command."""

from __future__ import annotations

from services.admissions import commands, intake
from services.admissions.messagebus import MessageBus
from shared.doors import Caller, Door, hospital_door
from shared.fhir.intake import parse_message_bundle

FHIR_JSON = "application/fhir+json"


def admissions_door(bus: MessageBus) -> Door[commands.AdmissionMessage]:
    settings = bus.deps.settings

    def read(raw: bytes, caller: Caller) -> commands.AdmissionMessage:
        message = parse_message_bundle(raw, FHIR_JSON, settings.max_body_bytes)
        return intake.admission_command(message, caller.organisation_id)

    return hospital_door(
        "hl7v2-admissions", read, bus.handle, record_refusal=bus.deps.record_refusal, max_bytes=settings.max_body_bytes
    )
