"""The deadline worker: each tick, retry placing waiting requests, then expire those past their deadline."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from services.snp import views
from services.snp.commands import ExpireRequest, PlaceWaitingRequest
from services.snp.messagebus import MessageBus

log = logging.getLogger(__name__)


def retry_waiting(bus: MessageBus, limit: int = 100) -> int:
    """How many waiting requests got a slot (new slots may have come since they were asked)."""
    ids = views.waiting_request_ids(bus.unit_of_work(), open_after=bus.deps.clock(), limit=limit)
    return sum(bool(bus.handle(PlaceWaitingRequest(request_id))) for request_id in ids)


def expire_due(bus: MessageBus, limit: int = 100) -> int:
    """How many requests this sweep expired; each expires once however many sweeps run at the same time."""
    ids = views.waiting_request_ids(bus.unit_of_work(), due_before=bus.deps.clock(), limit=limit)
    return sum(bool(bus.handle(ExpireRequest(request_id))) for request_id in ids)


def deadline_worker(bus: MessageBus, interval: float = 1.0) -> Callable[[threading.Event], None]:
    def run(stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                retry_waiting(bus)
                expire_due(bus)
            except Exception:
                log.exception("snp deadline worker tick failed")
            stop.wait(interval)

    return run
