"""The mail channel's commands, added to the notifications message bus beside its own (bootstrap.py)."""

from __future__ import annotations

from typing import Any

from services.notifications.mssante.channel import RemoveMailAddress, SetMailAddress, remove_address, set_address
from services.notifications.mssante.receipts import RecordMailReceipt, record_receipt

MAIL_HANDLERS: dict[type, Any] = {
    SetMailAddress: set_address,
    RemoveMailAddress: remove_address,
    RecordMailReceipt: record_receipt,
}
