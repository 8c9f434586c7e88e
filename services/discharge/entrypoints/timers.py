"""The background worker that fires due deadlines (handoff expiry, missed follow-ups) through the message bus."""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid

from sqlalchemy.exc import DBAPIError, OperationalError

from services.discharge.commands import FireNextTimer, SetTimerAside
from services.discharge.handlers import TimerFailed
from services.discharge.messagebus import MessageBus

log = logging.getLogger(__name__)


class TimerWorker:
    """Fires due timers one transaction each; replicas may race, the claim lets exactly one win."""

    def __init__(self, bus: MessageBus, *, interval: float = 1.0, batch: int = 200, name: str | None = None) -> None:
        self._bus = bus
        self._interval = interval
        self._batch = batch
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"

    def run_once(self) -> int:
        """Fire every timer due now (up to the batch size); returns how many this worker fired."""
        fired = 0
        for _ in range(self._batch):
            try:
                timer_id = self._bus.handle(FireNextTimer(self.name))
            except TimerFailed as exc:
                # A timer whose effect keeps failing must not block every later deadline.
                log.exception("timer %s failed; set aside with outcome 'error'", exc.timer_id)
                self._bus.handle(SetTimerAside(exc.timer_id, self.name))
                continue
            if timer_id is None:
                break
            if timer_id:
                fired += 1
        return fired

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.run_once()
            except (OperationalError, DBAPIError) as exc:
                log.warning("timer worker %s waiting for the database: %s", self.name, exc)
            stop.wait(self._interval)
