"""The snp message bus: routes, consumers and the deadline worker hand every command to `handle`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from services.snp.deps import Deps
from services.snp.handlers import HANDLERS
from services.snp.uow import SnpUnitOfWork


@dataclass(frozen=True)
class MessageBus:
    unit_of_work: Callable[[], SnpUnitOfWork]
    deps: Deps

    def handle(self, command: object) -> Any:
        """Run the one handler registered for this command in a fresh unit of work."""
        handler = HANDLERS[type(command)]
        return handler(command, self.unit_of_work(), self.deps)
