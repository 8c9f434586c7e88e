"""The admissions worker that takes off their team's list the patients no upload confirmed in time."""

from __future__ import annotations

import logging
import threading

from sqlalchemy.exc import DBAPIError, OperationalError

from services.admissions.commands import ExpirePanels
from services.admissions.messagebus import MessageBus

log = logging.getLogger(__name__)


class PanelExpiry:
    def __init__(self, bus: MessageBus, *, interval: float) -> None:
        self._bus = bus
        self._interval = interval

    def run_once(self) -> int:
        expired: int = self._bus.handle(ExpirePanels())
        return expired

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                while self.run_once() >= ExpirePanels.limit and not stop.is_set():
                    continue  # a full batch: more are due
            except (OperationalError, DBAPIError) as exc:
                log.warning("panel expiry waiting for the database: %s", type(exc).__name__)
            stop.wait(self._interval)
