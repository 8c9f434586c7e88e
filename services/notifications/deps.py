"""What every notifications handler may use besides its unit of work, built once in bootstrap.py."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from shared.settings import NotificationsSettings

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class NotificationsDeps:
    settings: NotificationsSettings
    clock: Clock = utcnow
    # Jitter of retry delays (tests pin it).
    rand: Callable[[], float] = field(default=random.random)
