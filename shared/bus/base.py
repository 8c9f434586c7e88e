"""One bus interface, two implementations: Kafka (kafka-python) and the embedded SQL log."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from shared.bus.envelope import Envelope


class BusUnavailable(Exception):
    """The broker (or the embedded log's database) did not take the messages; nothing was acknowledged."""


class Rebalancing(BusUnavailable):
    """The consumer group is moving partitions: poll again at once (that is where a member rejoins)."""


class MessageRejected(Exception):
    """The bus will never take these messages (too large, invalid): retrying cannot help.

    `positions` index the `send` calls since the previous flush; every other message was acknowledged."""

    def __init__(self, positions: Sequence[int], reason: str = "rejected") -> None:
        super().__init__(f"{len(positions)} message(s) rejected by the bus: {reason}")
        self.positions = sorted(set(positions))
        self.reason = reason


@dataclass(frozen=True)
class Record:
    """A message as a consumer sees it: where it sits in the log, and its raw value."""

    topic: str
    partition: int
    offset: int
    key: str | None
    value: bytes

    def envelope(self) -> Envelope:
        return Envelope.from_bytes(self.value)


class Producer(Protocol):
    def send(self, topic: str, key: str, value: bytes) -> None:
        """Queue a message; nothing is durable before `flush` returns."""

    def flush(self, timeout: float = 30.0) -> None:
        """Wait until every queued message is acknowledged (acks=all), else raise BusUnavailable."""

    def close(self) -> None: ...


class Consumer(Protocol):
    def poll(self, max_records: int = 100, timeout: float = 0.5) -> list[Record]:
        """Next records of the subscribed topics, in log order per partition."""

    def commit(self, record: Record) -> None:
        """Store the group's position just after `record` (call only once its handling is committed)."""

    def rewind(self, record: Record) -> None:
        """Deliver `record` again on the next poll (a transient failure must not advance the position)."""

    def close(self) -> None: ...


class Bus(Protocol):
    name: str

    def producer(self) -> Producer: ...

    def consumer(self, group_id: str, topics: Sequence[str]) -> Consumer: ...

    def ensure_topics(self, topics: Sequence[str]) -> None: ...

    def ping(self) -> bool: ...

    def close(self) -> None: ...


def dlq_topic(topic: str) -> str:
    return f"{topic}.dlq"
