"""The relais.careteam consumer: each registry change becomes a mirror command on the message bus."""

from __future__ import annotations

from services.snp.messagebus import MessageBus
from shared.bus.envelope import Envelope
from shared.bus.worker import Handler
from shared.events import TOPIC_CARETEAM
from shared.mirrors import registry_command


def on_careteam_message(bus: MessageBus, envelope: Envelope) -> bool:
    """`careteam.changed` and `territory.changed`, each handled once; False for a duplicate or another type."""
    command = registry_command(envelope)
    return command is not None and bool(bus.handle(command))


def careteam_handlers(bus: MessageBus) -> dict[str, Handler]:
    def on_careteam(envelope: Envelope) -> None:
        on_careteam_message(bus, envelope)

    return {TOPIC_CARETEAM: on_careteam}
