"""What every notifications handler may use besides its unit of work, built once in bootstrap.py."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property

from shared.auth import Directory
from shared.outbound import OutboundPolicy
from shared.settings import NotificationsSettings

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


def no_names(ids: Iterable[str]) -> Mapping[str, str]:
    return {}


@dataclass(frozen=True)
class NotificationsDeps:
    settings: NotificationsSettings
    clock: Clock = utcnow
    # Jitter of retry delays (tests pin it).
    rand: Callable[[], float] = field(default=random.random)
    # The organisation directory (MSSanté addresses live there); None in tests that need no mail channel.
    directory: Directory | None = None
    # Organisation id -> display name (the directory's), shown beside ids in feeds and webhook bodies.
    names: Callable[[Iterable[str]], Mapping[str, str]] = no_names

    @cached_property
    def outbound(self) -> OutboundPolicy:
        """Where registrants may point us (RELAIS_OUTBOUND_*); one attempt lasts at most the webhook timeout."""
        policy = OutboundPolicy.from_settings(self.settings)
        timeout = min(policy.timeout_seconds, self.settings.webhook_timeout_seconds)
        return dataclasses.replace(policy, timeout_seconds=timeout)
