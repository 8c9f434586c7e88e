"""Background loops of the snp service: the consumer of the care-team mirror and the deadline worker."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from services.snp import handlers
from services.snp.uow import SnpUnitOfWork
from shared.bus.envelope import Envelope
from shared.events import TOPIC_CARETEAM

log = logging.getLogger(__name__)


def careteam_handlers(uow_factory: Callable[[], SnpUnitOfWork], clock: handlers.Clock) -> dict:
    def on_careteam(envelope: Envelope) -> None:
        handlers.on_careteam_message(uow_factory(), envelope, clock)

    return {TOPIC_CARETEAM: on_careteam}


def deadline_worker(
    uow_factory: Callable[[], SnpUnitOfWork], clock: handlers.Clock, interval: float = 1.0
) -> Callable[[threading.Event], None]:
    """Each tick: retry waiting requests (new slots may have come), then expire those past their deadline."""

    def run(stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                handlers.retry_waiting(uow_factory, clock)
                handlers.expire_due(uow_factory, clock)
            except Exception:
                log.exception("snp deadline worker tick failed")
            stop.wait(interval)

    return run
