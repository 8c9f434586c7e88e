"""The team's mail channel: its address (kept in the directory, the one registration path the CLI also uses),
the events it chose, and the fan-out of a stored notification into the one delivery queue.

Only a treating team, and only for a full-detail notification, ever gets a mail: a minimised recipient (CPTS,
DAC) or an organisational one never does, whatever address an administrator gave it.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlmodel import col

from services.notifications.adapters.orm import DeliveryRow, NotificationRow
from services.notifications.deps import NotificationsDeps
from services.notifications.mssante.orm import MailChannelRow, MailReceiptRow
from services.notifications.uow import NotificationsUnitOfWork
from shared.auth import Directory, Principal
from shared.channels import MSSANTE_CHANNEL, check_channel, mailbox_validator, may_receive
from shared.errors import Forbidden, Unprocessable
from shared.events import Role
from shared.mssante_address import MssanteAddressError, check_mssante_address

TARGET_KIND = "mssante"
MAILTO = "mailto:"
# What a team may choose to receive by mail: the events about its own patients that carry a letter.
EVENT_CHOICES = (
    "admission.recorded", "admission.corrected", "admission.cancelled",
    "discharge.recorded", "discharge.corrected", "discharge.cancelled",
    "handoff.proposed", "handoff.cancelled", "followup.due", "followup.missed",
)
_TARGETS = uuid.UUID("8a1d3f0c-6b2e-4c8f-9e47-0b5d2c7a1e93")


def target_id(org_id: str) -> str:
    """The delivery queue of one organisation's mailbox (a UUID: target ids are 36 characters)."""
    return str(uuid.uuid5(_TARGETS, org_id))


@dataclass(frozen=True)
class SetMailAddress:
    principal: Principal
    address: Any
    events: Any = None


@dataclass(frozen=True)
class RemoveMailAddress:
    principal: Principal


@dataclass(frozen=True)
class MailChannel:
    org_id: str
    address: str | None
    events: tuple[str, ...]


class MailRepository:
    """Queries of the mail tables, on the unit of work's session (only the unit of work commits)."""

    def __init__(self, uow: NotificationsUnitOfWork) -> None:
        self.session = uow.session

    def channel(self, org_id: str) -> MailChannelRow | None:
        return self.session.get(MailChannelRow, org_id)

    def delivery(self, notification_id: str) -> DeliveryRow | None:
        query = select(DeliveryRow).where(
            col(DeliveryRow.notification_id) == notification_id, col(DeliveryRow.target_kind) == TARGET_KIND
        )
        return self.session.execute(query).scalars().first()

    def receipt(self, notification_id: str, status: str) -> MailReceiptRow | None:
        query = select(MailReceiptRow).where(
            col(MailReceiptRow.notification_id) == notification_id, col(MailReceiptRow.status) == status
        )
        return self.session.execute(query).scalars().first()

    def receipts(self, org_id: str, limit: int) -> list[MailReceiptRow]:
        query = (
            select(MailReceiptRow)
            .where(col(MailReceiptRow.org_id) == org_id)
            .order_by(col(MailReceiptRow.id).desc())
            .limit(limit)
        )
        return list(self.session.execute(query).scalars())


def _directory(deps: NotificationsDeps) -> Directory:
    if deps.directory is None:
        raise RuntimeError("the notifications service was built without its directory")
    return deps.directory


def _team_only(principal: Principal) -> None:
    if principal.role is not Role.TEAM:
        raise Forbidden("only a treating team registers an MSSanté address: mails name patients")


def check_events(events: Any, default: list[str]) -> tuple[str, ...]:
    if events is None:
        return tuple(e for e in default if e in EVENT_CHOICES)
    if not isinstance(events, list) or not events or len(events) > len(EVENT_CHOICES):
        raise Unprocessable("events must be a non-empty list of event codes", expression=["events"])
    unknown = [e for e in events if e not in EVENT_CHOICES]
    if unknown:
        raise Unprocessable(f"events may only name {', '.join(EVENT_CHOICES)}", expression=["events"])
    return tuple(dict.fromkeys(events))


def set_address(command: SetMailAddress, uow: NotificationsUnitOfWork, deps: NotificationsDeps) -> MailChannel:
    _team_only(command.principal)
    address = check_channel(
        MSSANTE_CHANNEL, command.address, None, mailbox_validator(deps.settings.mssante_domains)
    ).address
    events = check_events(command.events, deps.settings.mssante_events)
    org = command.principal.organisation_id
    directory = _directory(deps)
    previous = directory.mssante_address(org)
    directory.set_mssante_address(org, address)
    with uow:
        row = MailRepository(uow).channel(org)
        if row is None:
            uow.session.add(MailChannelRow(org_id=org, events=list(events), updated_at=deps.clock()))
        else:
            row.events, row.updated_at = list(events), deps.clock()
        if previous != address:
            uow.deliveries.cancel_pending(target_id(org))  # queued mails never go to a mailbox given up
        uow.audit.record("mssante.set", outcome="ok", organisation_id=org, role=command.principal.role.value,
                         resource=f"mssante/{org}")
        uow.commit()
    return MailChannel(org, address, events)


def remove_address(command: RemoveMailAddress, uow: NotificationsUnitOfWork, deps: NotificationsDeps) -> None:
    _team_only(command.principal)
    org = command.principal.organisation_id
    _directory(deps).set_mssante_address(org, None)
    with uow:
        row = MailRepository(uow).channel(org)
        if row is not None:
            uow.session.delete(row)
        uow.deliveries.cancel_pending(target_id(org))
        uow.audit.record("mssante.delete", outcome="ok", organisation_id=org, role=command.principal.role.value,
                         resource=f"mssante/{org}")
        uow.commit()


def read_channel(uow: NotificationsUnitOfWork, deps: NotificationsDeps, principal: Principal) -> MailChannel:
    org = principal.organisation_id
    address = _directory(deps).mssante_address(org)
    with uow:
        row = MailRepository(uow).channel(org)
        events = tuple(row.events) if row is not None else check_events(None, deps.settings.mssante_events)
    return MailChannel(org, address, events)


def mail_body(row: NotificationRow) -> dict[str, Any]:
    """What the mail is built from at send time (the same for every retry)."""
    return {
        "id": row.id, "event": row.event, "detail": row.detail, "recipient": row.recipient_org_id,
        "sender": row.sender_org_id, "sent_at": row.sent_at, "payload": row.payload,
    }


def queue_mail(row: NotificationRow, uow: NotificationsUnitOfWork, deps: NotificationsDeps) -> None:
    """Called when a notification is stored: one mail per recipient and notification (`dedup_key`)."""
    settings = deps.settings
    if not settings.mssante_smtp_url or deps.directory is None:
        return
    if row.role != Role.TEAM.value or not may_receive(MSSANTE_CHANNEL, row.role, row.detail):
        return  # the care-circle rule: a mail names a patient, so full-detail team recipients only
    address = deps.directory.mssante_address(row.recipient_org_id)
    if address is None:
        return
    try:
        address = check_mssante_address(address, settings.mssante_domains)
    except MssanteAddressError:
        return  # the allowed domains changed since it was registered: nothing leaves for it
    channel = MailRepository(uow).channel(row.recipient_org_id)
    if row.event not in (channel.events if channel is not None else settings.mssante_events):
        return
    # Built here rather than by handlers.common.new_delivery: the handlers package imports this module.
    delivery = DeliveryRow(
        id=str(uuid.uuid4()), org_id=row.recipient_org_id, target_kind=TARGET_KIND,
        target_id=target_id(row.recipient_org_id), kind="notification", dedup_key=f"m:{row.id}",
        notification_id=row.id, url=MAILTO + address,
        body=json.dumps(mail_body(row), separators=(",", ":"), ensure_ascii=False),
        state="pending", attempts=0, next_attempt_at=row.received_at, created_at=row.received_at,
    )
    uow.deliveries.add(delivery)


def channel_json(channel: MailChannel) -> dict[str, Any]:
    return {"organisation": channel.org_id, "address": channel.address, "events": list(channel.events)}


def receipt_json(row: MailReceiptRow) -> dict[str, Any]:
    return {
        "notification_id": row.notification_id, "kind": row.kind, "status": row.status, "code": row.code,
        "detail": row.detail, "received_at": row.received_at.isoformat(),
    }


