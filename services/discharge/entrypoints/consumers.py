"""Consumers of the discharge service: the care-team mirror from `relais.careteam`."""

from __future__ import annotations

import logging
from collections.abc import Callable

from services.discharge import handlers
from services.discharge.domain import MirrorCareTeam, MirrorTerritory
from services.discharge.uow import DischargeUnitOfWork
from shared.bus.envelope import Envelope, PoisonMessage
from shared.bus.worker import Handler
from shared.db.uow import handle_once
from shared.events import TOPIC_CARETEAM

log = logging.getLogger(__name__)

CONSUMER = "discharge.careteam"
CARETEAM_CHANGED = "careteam.changed"
TERRITORY_CHANGED = "territory.changed"


def careteam_handlers(
    unit_of_work: Callable[[], DischargeUnitOfWork], clock: handlers.Clock
) -> dict[str, Handler]:
    def on_careteam(envelope: Envelope) -> None:
        if envelope.type == CARETEAM_CHANGED:
            cmd = MirrorCareTeam(envelope.id, envelope.time, envelope.data)
            handle = lambda uow: handlers.mirror_careteam(uow, cmd, clock=clock)  # noqa: E731
        elif envelope.type == TERRITORY_CHANGED:
            cmd_t = MirrorTerritory(envelope.id, envelope.data)
            handle = lambda uow: handlers.mirror_territory(uow, cmd_t, clock=clock)  # noqa: E731
        else:
            log.debug("ignoring %s on %s", envelope.type, TOPIC_CARETEAM)
            return
        try:
            handle_once(unit_of_work(), CONSUMER, envelope.id, handle)
        except ValueError as exc:
            raise PoisonMessage(str(exc)) from exc

    return {TOPIC_CARETEAM: on_careteam}
