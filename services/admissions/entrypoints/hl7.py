"""The admissions service's doors of the HL7 v2 listener (admissions hosts it: docs/hl7v2.md).

- `admissions_door`: the equivalent FHIR message read into an admission command, handled here (the same door as
  the FHIR `$process-message` route's, `admissions_fhir_door`).
- `forwarding_discharge_door` (distributed mode): a discharge is read and checked by the shared reader here, then
  written to this service's outbox for the discharge service (topic relais.mllp.discharge); the ACK follows the
  commit of that row. In the embedded mode the discharge service's own door is used instead (relais/hl7.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.exc import IntegrityError

from services.admissions import commands, intake
from services.admissions.messagebus import MessageBus
from shared.doors import Caller, Door, hospital_door
from shared.events import TOPIC_HL7_DISCHARGE
from shared.fhir.encounter import read_encounter_message
from shared.fhir.intake import MessageBundle, parse_message_bundle
from shared.hl7v2 import build_hl7_door
from shared.hl7v2.mllp import listener_worker
from shared.hl7v2.settings import MllpSettings
from shared.idempotence import sender_message_id
from shared.service import Service

FHIR_JSON = "application/fhir+json"
FORWARDED_EVENT = "hl7v2.discharge-message"

log = logging.getLogger(__name__)


def admissions_fhir_door(
    bus: MessageBus,
    content_type: str | None = FHIR_JSON,
    name: str = "fhir-admissions",
    parse: Callable[[bytes, str | None, int], MessageBundle] = parse_message_bundle,
) -> Door[commands.AdmissionMessage]:
    """The admissions door of the kernel: a FHIR message (posted, or read from a v2 message) into a command."""
    settings = bus.deps.settings

    def read(raw: bytes, caller: Caller) -> commands.AdmissionMessage:
        message = parse(raw, content_type, settings.max_body_bytes)
        return intake.admission_command(message, caller.organisation_id)

    return hospital_door(
        name, read, bus.handle, record_refusal=bus.deps.record_refusal, max_bytes=settings.max_body_bytes
    )


def admissions_door(bus: MessageBus) -> Door[commands.AdmissionMessage]:
    return admissions_fhir_door(bus, FHIR_JSON, "hl7v2-admissions")


@dataclass(frozen=True)
class ForwardDischarge:
    message_id: str  # Relais' key: hospital + Bundle.id (itself derived from MSH-10)
    hospital_org_id: str
    bundle: dict[str, Any] = field(repr=False)


def forwarding_discharge_door(bus: MessageBus) -> Door[ForwardDischarge]:
    settings = bus.deps.settings

    def read(raw: bytes, caller: Caller) -> ForwardDischarge:
        message = parse_message_bundle(raw, FHIR_JSON, settings.max_body_bytes)
        # The checks every door makes (caller, identity, stay key) before anything is committed.
        read_encounter_message(message, caller.organisation_id, tolerant_referent=True)
        key = sender_message_id(caller.organisation_id, message.message_id)
        return ForwardDischarge(key, caller.organisation_id, message.raw)

    def forward(command: ForwardDischarge) -> None:
        with bus.unit_of_work() as uow:
            data = {"hospital": command.hospital_org_id, "bundle": command.bundle}
            # Keyed by hospital: the discharge service handles one hospital's stream in order.
            uow.outbox.add(TOPIC_HL7_DISCHARGE, command.hospital_org_id, FORWARDED_EVENT, data, command.message_id)
            try:
                uow.commit()
            except IntegrityError:  # forwarded already (a resend between commit and ACK): once is enough
                uow.rollback()

    return hospital_door(
        "hl7v2-discharge", read, forward, record_refusal=bus.deps.record_refusal, max_bytes=settings.max_body_bytes
    )


def attach_distributed_mllp(service: Service, settings: MllpSettings | None = None) -> bool:
    """`relais serve admissions` with RELAIS_MLLP_PORT: the listener runs with this service's workers."""
    settings = settings or MllpSettings()
    if settings.port is None:
        return False
    bus: MessageBus = service.app.state.bus
    door = build_hl7_door(service.runtime, admissions_door(bus), forwarding_discharge_door(bus), settings)
    service.runtime.extra_workers.append(listener_worker(door, settings))
    return True
