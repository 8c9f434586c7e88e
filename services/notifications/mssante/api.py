"""Routes of the mail channel: a team sets, reads or removes its MSSanté address (and the events it wants by
mail), and lists the receipts of its mails. Thin: parse, hand a command to the message bus, render."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field

from services.notifications.domain import page_limit
from services.notifications.entrypoints.dependencies import Bus, Caller, Settings
from services.notifications.mssante.channel import (
    EVENT_CHOICES,
    MailRepository,
    RemoveMailAddress,
    SetMailAddress,
    channel_json,
    read_channel,
    receipt_json,
)
from shared.errors import Forbidden
from shared.events import Role

router = APIRouter(prefix="/notifications/mssante", tags=["mssante"])


class MailAddressIn(BaseModel):
    address: Any = Field(description="the team's MSSanté mailbox, in an allowed domain (RELAIS_MSSANTE_DOMAINS)")
    events: Any = Field(default=None, description=f"events to receive by mail, among {', '.join(EVENT_CHOICES)}; "
                                                  "default: RELAIS_MSSANTE_EVENTS")


@router.put("", summary="Set your team's MSSanté address (discharge letters are mailed to it)")
def put_address(body: MailAddressIn, caller: Caller, bus: Bus) -> dict[str, Any]:
    return channel_json(bus.handle(SetMailAddress(caller, body.address, body.events)))


@router.get("", summary="Your team's MSSanté address and the events it receives by mail")
def get_address(caller: Caller, bus: Bus) -> dict[str, Any]:
    if caller.role is not Role.TEAM:
        raise Forbidden("only a treating team has an MSSanté channel in Relais")
    return channel_json(read_channel(bus.uow(), bus.deps, caller))


@router.delete("", status_code=204, summary="Stop mailing your team (pending mails are cancelled)")
def delete_address(caller: Caller, bus: Bus) -> Response:
    bus.handle(RemoveMailAddress(caller))
    return Response(status_code=204)


@router.get("/receipts", summary="What the recipients' software and operator said about your mails, newest first")
def receipts(caller: Caller, bus: Bus, settings: Settings, limit: int | None = None) -> list[dict[str, Any]]:
    size = page_limit(limit, settings.feed_default_limit, settings.feed_max_limit)
    with bus.uow() as uow:
        return [receipt_json(row) for row in MailRepository(uow).receipts(caller.organisation_id, size)]
