"""The Kafka bus on kafka-python: acks=all, one in-flight request per connection, manual offset commits."""

from __future__ import annotations

import logging
import socket
from collections.abc import Sequence

import kafka.errors
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError, TopicAlreadyExistsError
from kafka.structs import OffsetAndMetadata

from shared.bus.base import BusUnavailable, MessageRejected, Record

log = logging.getLogger(__name__)


# Errors about one record that no retry fixes (kafka-python names, looked up so a rename does not break import).
PERMANENT_RECORD_ERRORS: tuple[type[Exception], ...] = tuple(
    getattr(kafka.errors, name)
    for name in ("MessageSizeTooLargeError", "RecordTooLargeError", "InvalidRecordError", "CorruptRecordError",
                 "RecordBatchTooLargeError")
    if hasattr(kafka.errors, name)
)


class KafkaBusProducer:
    def __init__(self, producer: KafkaProducer) -> None:
        self._producer = producer
        self._futures: list = []
        self._rejected: list[int] = []

    def send(self, topic: str, key: str, value: bytes) -> None:
        position = len(self._futures)
        try:
            self._futures.append(self._producer.send(topic, key=key.encode(), value=value))
        except PERMANENT_RECORD_ERRORS:
            # Too large for max_request_size: refused before sending; remembered for flush to report.
            self._futures.append(None)
            self._rejected.append(position)
        except KafkaError as exc:
            self._futures.clear()
            self._rejected.clear()
            raise BusUnavailable(f"Kafka did not accept the message: {exc}") from exc

    def flush(self, timeout: float = 30.0) -> None:
        futures, self._futures = self._futures, []
        rejected, self._rejected = self._rejected, []
        try:
            self._producer.flush(timeout=timeout)
            for position, future in enumerate(futures):
                if future is None:
                    continue
                try:
                    future.get(timeout=0)
                except PERMANENT_RECORD_ERRORS:
                    rejected.append(position)
        except KafkaError as exc:
            raise BusUnavailable(f"Kafka did not acknowledge the batch: {exc}") from exc
        if rejected:
            raise MessageRejected(rejected, "the broker refused the record")

    def close(self) -> None:
        self._producer.close(timeout=5)


class KafkaBusConsumer:
    def __init__(self, consumer: KafkaConsumer) -> None:
        self._consumer = consumer

    def poll(self, max_records: int = 100, timeout: float = 0.5) -> list[Record]:
        try:
            batches = self._consumer.poll(timeout_ms=int(timeout * 1000), max_records=max_records)
        except KafkaError as exc:
            raise BusUnavailable(f"Kafka poll failed: {exc}") from exc
        records: list[Record] = []
        for messages in batches.values():
            for message in messages:
                key = message.key.decode() if message.key is not None else None
                records.append(Record(message.topic, message.partition, message.offset, key, message.value))
        return records

    def commit(self, record: Record) -> None:
        partition = TopicPartition(record.topic, record.partition)
        try:
            self._consumer.commit({partition: OffsetAndMetadata(record.offset + 1, "", -1)})
        except KafkaError as exc:
            raise BusUnavailable(f"Kafka offset commit failed: {exc}") from exc

    def rewind(self, record: Record) -> None:
        self._consumer.seek(TopicPartition(record.topic, record.partition), record.offset)

    def close(self) -> None:
        self._consumer.close(autocommit=False)


class KafkaBus:
    name = "kafka"

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        api_version: tuple[int, ...] | None = None,
        session_timeout_ms: int = 10_000,
        client_id: str = "relais",
        partitions: int = 3,
        security: dict[str, str] | None = None,
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.api_version = api_version
        self.session_timeout_ms = session_timeout_ms
        self.client_id = client_id
        self.partitions = partitions
        self.security = security or {}

    def _common(self) -> dict:
        common: dict = {
            "bootstrap_servers": self.bootstrap_servers.split(","),
            "client_id": self.client_id,
            # Retry a dead broker every second at most, so a returning broker is found quickly.
            "reconnect_backoff_max_ms": 1_000,
            **self.security,
        }
        if self.api_version:
            common["api_version"] = self.api_version
        return common

    def producer(self) -> KafkaBusProducer:
        try:
            producer = KafkaProducer(
                acks="all",
                # One request in flight per connection keeps per-key order through retries.
                max_in_flight_requests_per_connection=1,
                retries=5,
                linger_ms=2,
                max_block_ms=5_000,
                request_timeout_ms=10_000,
                # Fail within seconds on a dead broker, so the relay backs off instead of hanging.
                bootstrap_timeout_ms=5_000,
                **self._common(),
            )
        except KafkaError as exc:
            raise BusUnavailable(f"cannot reach Kafka at {self.bootstrap_servers}: {exc}") from exc
        return KafkaBusProducer(producer)

    def consumer(self, group_id: str, topics: Sequence[str]) -> KafkaBusConsumer:
        try:
            consumer = KafkaConsumer(
                *topics,
                group_id=group_id,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                session_timeout_ms=self.session_timeout_ms,
                heartbeat_interval_ms=max(self.session_timeout_ms // 3, 100),
                # Brokers that answer a fetch only when its wait expires (Tansu) would add up to this much latency.
                fetch_max_wait_ms=100,
                bootstrap_timeout_ms=5_000,
                **self._common(),
            )
        except KafkaError as exc:
            raise BusUnavailable(f"cannot reach Kafka at {self.bootstrap_servers}: {exc}") from exc
        return KafkaBusConsumer(consumer)

    def ensure_topics(self, topics: Sequence[str]) -> None:
        if self.api_version and self.api_version < (0, 10):
            return  # No admin API before 0.10: the broker auto-creates topics on first use.
        from kafka.admin import KafkaAdminClient, NewTopic

        admin = KafkaAdminClient(**self._common())
        try:
            existing = set(admin.list_topics())
            wanted = [NewTopic(topic, self.partitions, 1) for topic in topics if topic not in existing]
            if wanted:
                admin.create_topics(wanted)
        except TopicAlreadyExistsError:
            pass
        finally:
            admin.close()

    def ping(self) -> bool:
        """A broker of the bootstrap list accepts connections (readiness, not a full metadata round trip)."""
        for server in self.bootstrap_servers.split(","):
            host, _, port = server.strip().rpartition(":")
            try:
                with socket.create_connection((host.strip("[]"), int(port)), timeout=2):
                    return True
            except OSError:
                continue
        return False

    def close(self) -> None:
        """Clients are owned by whoever asked for them."""
