"""What several handlers build: a queued delivery and its JSON body."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from services.notifications.adapters.orm import DeliveryRow


def new_delivery(
    *,
    org_id: str,
    target_kind: str,
    target_id: str,
    kind: str,
    dedup_key: str,
    url: str,
    body: dict[str, Any],
    notification_id: str | None,
    now: datetime,
) -> DeliveryRow:
    """A pending delivery, due now; `dedup_key` is unique per target, so a repeated fan-out adds nothing."""
    return DeliveryRow(
        id=str(uuid.uuid4()),
        org_id=org_id,
        target_kind=target_kind,
        target_id=target_id,
        kind=kind,
        dedup_key=dedup_key,
        notification_id=notification_id,
        url=url,
        body=json.dumps(body, separators=(",", ":"), ensure_ascii=False),
        state="pending",
        attempts=0,
        next_attempt_at=now,
        created_at=now,
    )
