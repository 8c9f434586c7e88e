"""Consumers of the admissions service: registry updates other services ask for, through the message bus."""

from __future__ import annotations

import logging
from typing import Any

from services.admissions.commands import AssignTreatingTeam
from shared.bus.envelope import Envelope, PoisonMessage
from shared.bus.worker import Handler
from shared.contracts import parse_registry_update
from shared.events import TOPIC_REGISTRY_UPDATES

log = logging.getLogger(__name__)


def registry_update_handlers(bus: Any) -> dict[str, Handler]:
    def on_update(envelope: Envelope) -> None:
        try:
            update = parse_registry_update(envelope.type, envelope.data)
            if update is None:
                log.debug("ignoring %s on %s", envelope.type, TOPIC_REGISTRY_UPDATES)
                return
            bus.handle(AssignTreatingTeam(envelope.id, update))
        except ValueError as exc:  # a broken contract (InvalidContract) no retry will fix
            raise PoisonMessage(str(exc)) from exc

    return {TOPIC_REGISTRY_UPDATES: on_update}
