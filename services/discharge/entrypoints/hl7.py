"""The discharge service's side of the HL7 v2 door.

- `discharge_door`: the equivalent FHIR message read into a discharge command (embedded mode: called by the
  listener in the same process).
- `forwarded_handlers` (distributed mode): the discharges the admissions-hosted listener forwards on
  relais.mllp.discharge, read into the same command. The hospital already had its AA (the forwarded row was
  committed); what this service refuses now is audited here, as the ACK can no longer say it.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from services.discharge.commands import DischargeMessage
from services.discharge.intake import discharge_command
from services.discharge.messagebus import MessageBus
from shared.bus.envelope import Envelope, PoisonMessage
from shared.bus.worker import Handler
from shared.doors import Caller, Door, hospital_door
from shared.errors import RelaisError
from shared.events import TOPIC_HL7_DISCHARGE, Role
from shared.fhir.intake import MessageBundle, parse_message_bundle

FHIR_JSON = "application/fhir+json"


def discharge_fhir_door(
    bus: MessageBus,
    content_type: str | None = FHIR_JSON,
    name: str = "fhir-discharge",
    parse: Callable[[bytes, str | None, int], MessageBundle] = parse_message_bundle,
) -> Door[DischargeMessage]:
    """The discharge door of the kernel: a FHIR message (posted, or read from a v2 message) into a command."""
    settings = bus.deps.settings

    def read(raw: bytes, caller: Caller) -> DischargeMessage:
        message = parse(raw, content_type, settings.max_body_bytes)
        return discharge_command(message, caller.organisation_id, settings.max_followups)

    return hospital_door(
        name, read, bus.handle, record_refusal=bus.deps.record_refusal, max_bytes=settings.max_body_bytes
    )


def discharge_door(bus: MessageBus) -> Door[DischargeMessage]:
    return discharge_fhir_door(bus, FHIR_JSON, "hl7v2-discharge")


def forwarded_handlers(bus: MessageBus) -> dict[str, Handler]:
    door = discharge_door(bus)

    def on_forwarded(envelope: Envelope) -> None:
        try:
            hospital, bundle = str(envelope.data["hospital"]), envelope.data["bundle"]
            raw = json.dumps(bundle, ensure_ascii=False).encode("utf-8")
        except (KeyError, TypeError, ValueError) as exc:
            raise PoisonMessage(f"not a forwarded HL7 v2 discharge: {type(exc).__name__}") from exc
        try:
            door(raw, Caller(hospital, Role.HOSPITAL, "mllp", None))
        except RelaisError as exc:
            if exc.status_code >= 500:
                raise  # transient: retried, the offset not advanced
            door.refuse(
                Caller(hospital, Role.HOSPITAL, "mllp", None),
                f"hl7v2 forwarded: {type(exc).__name__}",
                status=exc.status_code,
                expression=(exc.expression or [""])[0][:100],
            )

    return {TOPIC_HL7_DISCHARGE: on_forwarded}
