"""The one ordering rule of every mirror: the snapshot with the newer contract time (`at`) wins.

Per-key order on the bus may break across rebalances and redeliveries, so a mirror compares what it holds with what
arrives instead of trusting arrival order. Snapshots are whole, so the newer one is the truth. Ties (the registry's
clock gives the same `at` to snapshots written in one transaction) fall to the envelope's time, which the producer
stamps as it writes them in order, then to the message id, so any set of snapshots, in any order, any number of times,
leaves the same row.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from shared.contracts import newer_wins


@dataclass(frozen=True)
class Stamp:
    """What orders one snapshot: the contract's time, the envelope's time, the envelope's id."""

    at: str | None
    sent_at: str | None
    message_id: str | None


def supersedes(incoming: Stamp, stored: Stamp) -> bool:
    """Whether a mirror replaces the stored snapshot with the incoming one; a time missing on either side (a row
    from before the time was kept, a producer that did not write it) decides nothing and the next key is compared."""
    for mine, theirs in ((incoming.at, stored.at), (incoming.sent_at, stored.sent_at)):
        if not newer_wins(mine, theirs):
            return False
        if not newer_wins(theirs, mine):
            return True
    if incoming.message_id is None or stored.message_id is None:
        return True
    return incoming.message_id >= stored.message_id


def parse_instant(value: str | None) -> datetime | None:
    """A stamp's time as an aware datetime (UTC when the text has no offset); None when absent or unreadable."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
