"""Consumers of the discharge service: the registry mirror from `relais.careteam`, through the message bus."""

from __future__ import annotations

import logging

from services.discharge.messagebus import MessageBus
from shared.bus.envelope import Envelope, PoisonMessage
from shared.bus.worker import Handler
from shared.events import TOPIC_CARETEAM
from shared.mirrors import registry_command

log = logging.getLogger(__name__)


def careteam_handlers(bus: MessageBus) -> dict[str, Handler]:
    def on_registry(envelope: Envelope) -> None:
        try:
            command = registry_command(envelope)
        except ValueError as exc:  # a broken contract (InvalidContract) no retry will fix
            raise PoisonMessage(str(exc)) from exc
        if command is None:
            log.debug("ignoring %s on %s", envelope.type, TOPIC_CARETEAM)
            return
        bus.handle(command)

    return {TOPIC_CARETEAM: on_registry}
