"""The discharge message bus: routes, consumers and the timer worker hand every command to `handle`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from services.discharge.commands import Command
from services.discharge.deps import Deps
from services.discharge.handlers import HANDLERS
from services.discharge.uow import DischargeUnitOfWork


@dataclass(frozen=True)
class MessageBus:
    unit_of_work: Callable[[], DischargeUnitOfWork]
    deps: Deps

    def handle(self, command: Command) -> Any:
        """Run the one handler registered for this command in a fresh unit of work."""
        handler = HANDLERS[type(command)]
        return handler(command, self.unit_of_work(), self.deps)
