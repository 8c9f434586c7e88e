"""The embedded log: Kafka's contract (topics, per-key order, consumer groups with stored positions) on a SQL table.

Each topic is a single partition whose offsets are the table's ascending ids, so per-key order is total order.
One consumer per group and topic at a time: the embedded mode is for one process on one machine.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Engine,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.exc import SQLAlchemyError

from shared.bus.base import BusUnavailable, Record
from shared.clock import utcnow
from shared.db.engine import is_postgres, make_engine

metadata = MetaData()
bus_log = Table(
    "bus_log",
    metadata,
    Column("offset", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("topic", String(200), nullable=False, index=True),
    Column("key", String(200), nullable=True),
    Column("value", LargeBinary, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)
bus_position = Table(
    "bus_position",
    metadata,
    Column("group_id", String(200), primary_key=True),
    Column("topic", String(200), primary_key=True),
    Column("position", BigInteger, nullable=False),
)


class EmbeddedProducer:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._pending: list[dict] = []
        self._lock = threading.Lock()

    def send(self, topic: str, key: str, value: bytes) -> None:
        row = {"topic": topic, "key": key, "value": value, "created_at": utcnow()}
        with self._lock:
            self._pending.append(row)

    def flush(self, timeout: float = 30.0) -> None:
        with self._lock:
            rows, self._pending = self._pending, []
        if not rows:
            return
        try:
            with self._engine.begin() as connection:
                if is_postgres(self._engine):
                    # Offsets must become visible in id order, or a reader could skip a later-committing id.
                    connection.execute(text("LOCK TABLE bus_log IN SHARE ROW EXCLUSIVE MODE"))
                connection.execute(insert(bus_log), rows)
        except SQLAlchemyError as exc:
            raise BusUnavailable(f"embedded log write failed: {exc}") from exc

    def close(self) -> None:
        self._pending.clear()


class EmbeddedConsumer:
    def __init__(self, engine: Engine, group_id: str, topics: Sequence[str], poll_interval: float = 0.02) -> None:
        self._engine = engine
        self._group_id = group_id
        self._topics = list(topics)
        self._poll_interval = poll_interval
        self._fetch_position: dict[str, int] = {}

    def _load_positions(self) -> None:
        query = select(bus_position.c.topic, bus_position.c.position).where(
            bus_position.c.group_id == self._group_id, bus_position.c.topic.in_(self._topics)
        )
        with self._engine.connect() as connection:
            stored = dict(connection.execute(query).all())
        self._fetch_position = {topic: stored.get(topic, 0) for topic in self._topics}

    def poll(self, max_records: int = 100, timeout: float = 0.5) -> list[Record]:
        deadline = time.monotonic() + timeout
        while True:
            records = self._fetch(max_records)
            if records or time.monotonic() >= deadline:
                return records
            time.sleep(self._poll_interval)

    def _fetch(self, max_records: int) -> list[Record]:
        try:
            if not self._fetch_position:
                self._load_positions()
            records: list[Record] = []
            with self._engine.connect() as connection:
                for topic in self._topics:
                    query = (
                        select(bus_log.c.offset, bus_log.c.key, bus_log.c.value)
                        .where(bus_log.c.topic == topic, bus_log.c.offset >= self._fetch_position[topic])
                        .order_by(bus_log.c.offset)
                        .limit(max_records)
                    )
                    for offset, key, value in connection.execute(query):
                        records.append(Record(topic, 0, offset, key, bytes(value)))
        except SQLAlchemyError as exc:
            raise BusUnavailable(f"embedded log read failed: {exc}") from exc
        for record in records:
            self._fetch_position[record.topic] = max(self._fetch_position[record.topic], record.offset + 1)
        records.sort(key=lambda record: record.offset)
        return records

    def commit(self, record: Record) -> None:
        values = {"group_id": self._group_id, "topic": record.topic, "position": record.offset + 1}
        try:
            with self._engine.begin() as connection:
                changed = connection.execute(
                    update(bus_position)
                    .where(bus_position.c.group_id == self._group_id, bus_position.c.topic == record.topic)
                    .values(position=values["position"])
                ).rowcount
                if not changed:
                    connection.execute(insert(bus_position).values(**values))
        except SQLAlchemyError as exc:
            raise BusUnavailable(f"embedded log commit failed: {exc}") from exc

    def rewind(self, record: Record) -> None:
        self._fetch_position[record.topic] = record.offset

    def close(self) -> None:
        self._fetch_position.clear()


class EmbeddedBus:
    name = "embedded"

    def __init__(self, url: str, schema: str | None = None) -> None:
        self.engine = make_engine(url, schema)
        metadata.create_all(self.engine)

    def producer(self) -> EmbeddedProducer:
        return EmbeddedProducer(self.engine)

    def consumer(self, group_id: str, topics: Sequence[str]) -> EmbeddedConsumer:
        return EmbeddedConsumer(self.engine, group_id, topics)

    def ensure_topics(self, topics: Sequence[str]) -> None:
        """Topics need no creation in the log table."""

    def ping(self) -> bool:
        try:
            with self.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
            return True
        except SQLAlchemyError:
            return False

    def close(self) -> None:
        self.engine.dispose()
