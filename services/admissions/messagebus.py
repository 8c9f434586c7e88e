"""The admissions message bus: every route hands its command to `handle`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from services.admissions.deps import Deps
from services.admissions.handlers import HANDLERS
from services.admissions.uow import AdmissionsUnitOfWork
from services.admissions.views import ForeignRecord, OppositionStands, OutsideCircle


@dataclass(frozen=True)
class MessageBus:
    unit_of_work: Callable[[], AdmissionsUnitOfWork]
    deps: Deps

    def handle(self, command: object) -> Any:
        """Run the one handler registered for this command in a fresh unit of work."""
        handler = HANDLERS[type(command)]
        try:
            return handler(command, self.unit_of_work(), self.deps)
        # The handler's unit of work is closed: audit in a transaction of its own.
        except (ForeignRecord, OutsideCircle, OppositionStands) as foreign:
            foreign.record(self.deps.record_refusal)
            raise
