"""The HL7 v2 door in the embedded mode (`relais run --mllp-port`): hosted by admissions, discharges handed
straight to the discharge service's bus in the same process (both commit before the ACK)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from services.admissions.entrypoints.hl7 import admissions_door
from services.discharge.entrypoints.hl7 import discharge_door
from shared.hl7v2 import build_hl7_door
from shared.hl7v2.door import Hl7Door
from shared.hl7v2.mllp import listener_worker
from shared.hl7v2.settings import MllpSettings
from shared.service import Service


def _named(services: Sequence[Service], name: str) -> Any:
    return next(service for service in services if service.name == name)


def embedded_hl7_door(services: Sequence[Service], settings: MllpSettings) -> Hl7Door:
    admissions, discharge = _named(services, "admissions"), _named(services, "discharge")
    return build_hl7_door(
        admissions.runtime,
        admissions_door(admissions.app.state.bus),
        discharge_door(discharge.app.state.messagebus),
        settings,
    )


def attach_mllp(services: Sequence[Service], settings: MllpSettings) -> Hl7Door:
    """Start the listener with the admissions service's workers (and stop it with them)."""
    door = embedded_hl7_door(services, settings)
    _named(services, "admissions").runtime.extra_workers.append(listener_worker(door, settings))
    return door
