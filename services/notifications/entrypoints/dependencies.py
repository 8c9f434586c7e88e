"""Typed dependencies of the routes: the caller, the message bus, the settings (all built in bootstrap.py)."""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import Depends, Request

from services.notifications.messagebus import MessageBus
from shared.auth import Principal, current_principal, require_role
from shared.events import Role
from shared.settings import NotificationsSettings


def message_bus(request: Request) -> MessageBus:
    return cast(MessageBus, request.app.state.messagebus)


def settings(bus: Annotated[MessageBus, Depends(message_bus)]) -> NotificationsSettings:
    return bus.deps.settings


Caller = Annotated[Principal, Depends(current_principal)]
Bus = Annotated[MessageBus, Depends(message_bus)]
Settings = Annotated[NotificationsSettings, Depends(settings)]
Admin = Annotated[Principal, Depends(require_role(Role.ADMIN))]
