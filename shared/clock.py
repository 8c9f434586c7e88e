"""Time, once for the kernel: the system clock services inject, and the one format of an instant on the wire.

Every instant Relais writes into what it sends (FHIR `instant`/`dateTime`, contract times) is UTC with milliseconds
and a `Z`: `2026-12-03T08:00:00.000Z`. Services take a `Clock` so tests can hold time still.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


system_clock: Clock = utcnow


def instant(moment: datetime) -> str:
    """`moment` on the wire: UTC, milliseconds, `Z` (a naive datetime is taken as UTC)."""
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def now_instant(clock: Clock = utcnow) -> str:
    return instant(clock())
