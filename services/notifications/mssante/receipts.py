"""Receipts of the mails: RFC 8098 disposition notifications (the practice software displayed, processed or
refused the letter, with its own code) and RFC 3464 delivery status notifications (the operator delivered it or
bounced it), matched to their notification by the Message-ID Relais set, then recorded: the team's
notification is read, the disclosure log has the line, a failure dead-letters the mail (visible, redeliverable)."""

from __future__ import annotations

from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage, Message
from email.parser import BytesHeaderParser
from typing import Any

from services.notifications.deps import NotificationsDeps
from services.notifications.handlers.feed import receipt_id
from services.notifications.mssante.channel import MAILTO, MailRepository
from services.notifications.mssante.letter import clean
from services.notifications.mssante.message import address_hash, parse_message_id
from services.notifications.mssante.orm import MailReceiptRow
from services.notifications.uow import NotificationsUnitOfWork
from shared.events import TOPIC_RECEIPTS, EventType

MAX_REPORT_BYTES = 1_000_000
_MDN_STATUS = {"displayed": "read", "processed": "processed", "dispatched": "processed", "deleted": "failed"}
_DSN_STATUS = {"delivered": "delivered", "relayed": "delivered", "expanded": "delivered", "failed": "failed"}


@dataclass(frozen=True)
class Report:
    kind: str  # mdn | dsn
    status: str  # delivered | read | processed | failed
    code: str
    detail: str | None
    original_message_id: str
    final_recipient: str | None


@dataclass(frozen=True)
class RecordMailReceipt:
    report: Report


def _address(field: Any) -> str | None:
    """`rfc822; someone@example.org` -> the address, lower-cased."""
    if not field:
        return None
    _, _, value = str(field).partition(";")
    return clean(value or field, 254).strip("<> ").lower() or None


def _fields(part: Message) -> list[Message]:
    """The field blocks of a report part, however the parser represented them."""
    payload = part.get_payload()
    if isinstance(payload, list):
        return [p for p in payload if isinstance(p, Message)]
    raw = part.get_payload(decode=True)
    if isinstance(raw, bytes):
        return [BytesHeaderParser(policy=policy.default).parsebytes(raw.replace(b"\r\n\r\n", b"\r\n"))]
    return []


def _original_id(report: EmailMessage, fields: list[Message]) -> str:
    for block in fields:
        for name in ("Original-Message-ID", "Original-Envelope-Id"):
            if block.get(name):
                return clean(block[name], 300)
    for part in report.walk():
        kind = part.get_content_type()
        if kind == "text/rfc822-headers":
            raw = part.get_payload(decode=True)
            headers = BytesHeaderParser(policy=policy.default).parsebytes(raw if isinstance(raw, bytes) else b"")
            if headers.get("Message-ID"):
                return clean(headers["Message-ID"], 300)
        if kind == "message/rfc822":
            inner = part.get_payload()
            first = inner[0] if isinstance(inner, list) and inner else None
            if isinstance(first, Message) and first.get("Message-ID"):
                return clean(first["Message-ID"], 300)
    return ""


def _mdn(report: EmailMessage, fields: list[Message]) -> Report | None:
    block = next((b for b in fields if b.get("Disposition")), None)
    if block is None:
        return None
    disposition = clean(block["Disposition"], 100)
    kind = disposition.rpartition(";")[2].strip().lower()
    base, _, modifier = kind.partition("/")
    status = "failed" if "error" in modifier else _MDN_STATUS.get(base)
    if status is None:
        return None
    detail = block.get("Error") or block.get("Failure") or block.get("Warning")
    return Report("mdn", status, kind or disposition, clean(detail, 300) or None, _original_id(report, fields),
                  _address(block.get("Final-Recipient")))


def _dsn(report: EmailMessage, fields: list[Message]) -> Report | None:
    recipient = next((b for b in fields if b.get("Action")), None)
    if recipient is None:
        return None
    status = _DSN_STATUS.get(clean(recipient["Action"], 20).lower())
    if status is None:
        return None  # delayed: the operator still tries, nothing to record yet
    return Report("dsn", status, clean(recipient.get("Status"), 20) or status,
                  clean(recipient.get("Diagnostic-Code"), 300) or None, _original_id(report, fields),
                  _address(recipient.get("Final-Recipient")))


def parse_report(raw: bytes) -> Report | None:
    """A receipt, or None for any other mail (or one too large to be a receipt). Never raises."""
    if len(raw) > MAX_REPORT_BYTES:
        return None
    try:
        mail = message_from_bytes(raw, policy=policy.default)
        if not isinstance(mail, EmailMessage) or mail.get_content_type() != "multipart/report":
            return None
        for part in mail.iter_parts():
            kind = part.get_content_type()
            if kind == "message/disposition-notification":
                return _mdn(mail, _fields(part))
            if kind in ("message/delivery-status", "message/global-delivery-status"):
                return _dsn(mail, _fields(part))
    except Exception:  # noqa: BLE001 - a malformed mail in our inbox is skipped, never the reader's crash
        return None
    return None


def record_receipt(command: RecordMailReceipt, uow: NotificationsUnitOfWork, deps: NotificationsDeps) -> bool:
    """True when the receipt was new and matched one of our mails to the very address it was sent to."""
    report = command.report
    parsed = parse_message_id(report.original_message_id)
    if parsed is None:
        return False
    notification_id, recipient_hash = parsed
    now = deps.clock()
    with uow:
        mail = MailRepository(uow)
        delivery = mail.delivery(notification_id)
        if delivery is None:
            return False
        address = delivery.url.removeprefix(MAILTO)
        if address_hash(address) != recipient_hash or report.final_recipient not in (None, address):
            return False  # a receipt about another mailbox than the one we wrote to: not this mail's
        if mail.receipt(notification_id, report.status) is not None:
            return False
        uow.session.add(MailReceiptRow(
            notification_id=notification_id, org_id=delivery.org_id, delivery_id=delivery.id, kind=report.kind,
            status=report.status, code=report.code, detail=report.detail, received_at=now,
        ))
        notification = uow.notifications.by_id(notification_id)
        if notification is not None:
            uow.disclosures.record(notification, f"mssante:{report.status}", now)
            if report.status == "read" and notification.read_at is None:
                _mark_read(uow, notification, now)
        if report.status == "failed":
            # A bounce or a refusal: the mail is a dead letter the team sees and may redeliver; feed and
            # webhooks carried the notification anyway.
            delivery.state, delivery.dead_at = "dead", now
            delivery.last_error = clean(f"{report.kind} {report.code}", 500)
        uow.commit()
    return True


def _mark_read(uow: NotificationsUnitOfWork, notification: Any, now: Any) -> None:
    """What the feed's `$ack` does: read once, and the sender (the hospital) gets its read receipt."""
    notification.read_at = now
    if notification.sender_org_id:
        uow.outbox.add(
            TOPIC_RECEIPTS,
            notification.sender_org_id,
            EventType.NOTIFICATION_READ.value,
            {
                "notification_id": notification.id,
                "reader": notification.recipient_org_id,
                "read_at": now.isoformat(),
                "event": notification.event,
                "sender": notification.sender_org_id,
                "subject": notification.subject,
            },
            message_id=receipt_id(notification.id),
        )
