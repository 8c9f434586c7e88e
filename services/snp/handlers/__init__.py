"""One function per snp command, `handler(command, uow, deps)`, all registered in HANDLERS."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from services.snp.commands import (
    BookSlot,
    ChangeAppointmentStatus,
    ExpireRequest,
    MirrorCareTeam,
    MirrorTerritory,
    PlaceWaitingRequest,
    PublishAvailability,
    RequestSnp,
    WithdrawSlot,
)
from services.snp.deps import Deps
from services.snp.handlers.availability import EntryErrors, EntryResult, publish_availability, withdraw_slot
from services.snp.handlers.deadlines import expire_request
from services.snp.handlers.mirrors import mirror_care_team, mirror_territory
from services.snp.handlers.outcomes import change_appointment_status
from services.snp.handlers.publish import stable_id
from services.snp.handlers.requests import book_slot, place_waiting_request, request_snp
from services.snp.uow import SnpUnitOfWork

Handler = Callable[[Any, SnpUnitOfWork, Deps], Any]

HANDLERS: dict[type, Handler] = {
    PublishAvailability: publish_availability,
    WithdrawSlot: withdraw_slot,
    RequestSnp: request_snp,
    BookSlot: book_slot,
    PlaceWaitingRequest: place_waiting_request,
    ChangeAppointmentStatus: change_appointment_status,
    ExpireRequest: expire_request,
    MirrorCareTeam: mirror_care_team,
    MirrorTerritory: mirror_territory,
}

__all__ = ["HANDLERS", "EntryErrors", "EntryResult", "Handler", "stable_id"]
