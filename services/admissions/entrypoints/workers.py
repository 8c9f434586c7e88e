"""The admissions worker that hands over change-of-team requests nobody answered in time."""

from __future__ import annotations

import logging
import threading

from sqlalchemy.exc import DBAPIError, OperationalError

from services.admissions.commands import ExpireTeamChanges
from services.admissions.messagebus import MessageBus

log = logging.getLogger(__name__)


class TeamChangeExpiry:
    def __init__(self, bus: MessageBus, *, interval: float) -> None:
        self._bus = bus
        self._interval = interval

    def run_once(self) -> int:
        handed_over: int = self._bus.handle(ExpireTeamChanges())
        return handed_over

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.run_once()
            except (OperationalError, DBAPIError) as exc:
                log.warning("team-change expiry waiting for the database: %s", type(exc).__name__)
            stop.wait(self._interval)
