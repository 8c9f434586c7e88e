"""Consumers of the discharge service: the registry mirror from `relais.careteam`, through the message bus."""

from __future__ import annotations

import logging

from services.discharge.commands import MirrorCareTeam, MirrorTerritory
from services.discharge.messagebus import MessageBus
from shared.bus.envelope import Envelope, PoisonMessage
from shared.bus.worker import Handler
from shared.contracts import CareTeamChanged, parse_registry_change
from shared.events import TOPIC_CARETEAM

log = logging.getLogger(__name__)


def careteam_handlers(bus: MessageBus) -> dict[str, Handler]:
    def on_registry(envelope: Envelope) -> None:
        try:
            change = parse_registry_change(envelope.type, envelope.data)
            if change is None:
                log.debug("ignoring %s on %s", envelope.type, TOPIC_CARETEAM)
                return
            if isinstance(change, CareTeamChanged):
                bus.handle(MirrorCareTeam(envelope.id, envelope.time, change))
            else:
                bus.handle(MirrorTerritory(envelope.id, change))
        except ValueError as exc:  # a broken contract (InvalidContract) no retry will fix
            raise PoisonMessage(str(exc)) from exc

    return {TOPIC_CARETEAM: on_registry}
