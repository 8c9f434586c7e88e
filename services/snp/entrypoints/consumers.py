"""The relais.careteam consumer: each registry change becomes a mirror command on the message bus."""

from __future__ import annotations

from services.snp.commands import MirrorCareTeam, MirrorTerritory
from services.snp.messagebus import MessageBus
from shared.bus.envelope import Envelope
from shared.bus.worker import Handler
from shared.contracts import CareTeamChanged, parse_registry_change
from shared.events import TOPIC_CARETEAM


def on_careteam_message(bus: MessageBus, envelope: Envelope) -> bool:
    """`careteam.changed` and `territory.changed`, each handled once; False for a duplicate or another type."""
    change = parse_registry_change(envelope.type, envelope.data)
    if change is None:
        return False
    if isinstance(change, CareTeamChanged):
        return bool(bus.handle(MirrorCareTeam(envelope.id, change)))
    return bool(bus.handle(MirrorTerritory(envelope.id, change)))


def careteam_handlers(bus: MessageBus) -> dict[str, Handler]:
    def on_careteam(envelope: Envelope) -> None:
        on_careteam_message(bus, envelope)

    return {TOPIC_CARETEAM: on_careteam}
