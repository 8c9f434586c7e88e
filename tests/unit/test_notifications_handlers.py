"""The notifications service has one handler per command, all registered in HANDLERS."""

from __future__ import annotations

import dataclasses
import inspect

from services.notifications import commands
from services.notifications.handlers import HANDLERS


def test_every_command_has_exactly_one_handler_with_the_one_signature():
    defined = {
        obj
        for _, obj in inspect.getmembers(commands, inspect.isclass)
        if dataclasses.is_dataclass(obj) and obj.__module__ == commands.__name__
    }
    assert defined == set(HANDLERS)
    for handler in HANDLERS.values():
        assert list(inspect.signature(handler).parameters) == ["command", "uow", "deps"]
