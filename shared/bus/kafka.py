"""The Kafka bus on kafka-python: idempotent producer with acks=all, metadata in record headers, topics
created through the admin API as deploy/kafka/topics.yaml describes them, manual offset commits."""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import kafka.errors
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError, TopicAlreadyExistsError
from kafka.structs import MemberState, OffsetAndMetadata

from shared.bus.base import BusUnavailable, MessageRejected, Rebalancing, Record

log = logging.getLogger(__name__)

# The repository's topic plan; deployments point RELAIS_KAFKA_TOPICS_FILE at their copy.
DEFAULT_TOPICS_FILE = Path(__file__).resolve().parents[2] / "deploy" / "kafka" / "topics.yaml"
HEADER_FIELDS = ("id", "type", "source", "time")


@dataclass(frozen=True)
class TopicSpec:
    partitions: int
    replication_factor: int
    config: dict[str, str] = field(default_factory=dict)


def load_topic_specs(path: Path | None) -> dict[str, TopicSpec]:
    """Topics, partitions, replication and configs from a topics.yaml (empty when there is none)."""
    if path is None or not path.is_file():
        return {}
    try:
        import yaml
    except ImportError:  # a trimmed install without PyYAML still runs: topics get the bus defaults
        log.warning("PyYAML is not installed: %s ignored, topics get default partitions", path)
        return {}
    plan = yaml.safe_load(path.read_text()) or {}
    defaults = plan.get("defaults") or {}
    specs = {}
    for topic in plan.get("topics") or []:
        config = {k: str(v) for k, v in {**(defaults.get("config") or {}), **(topic.get("config") or {})}.items()}
        replication = int(topic.get("replication_factor", defaults.get("replication_factor", 1)))
        specs[topic["name"]] = TopicSpec(int(topic["partitions"]), replication, config)
    return specs


def envelope_headers(value: bytes) -> list[tuple[str, bytes]]:
    """The envelope's metadata as record headers, so brokers' tools and consumers route without parsing."""
    try:
        body = json.loads(value)
    except ValueError:
        return []
    if not isinstance(body, dict):
        return []
    headers = [(f"relais-{name}", str(body[name]).encode()) for name in HEADER_FIELDS if body.get(name)]
    return [("content-type", b"application/json"), *headers] if headers else []


# Errors about one record that no retry fixes (kafka-python names, looked up so a rename does not break import).
PERMANENT_RECORD_ERRORS: tuple[type[Exception], ...] = tuple(
    getattr(kafka.errors, name)
    for name in ("MessageSizeTooLargeError", "RecordTooLargeError", "InvalidRecordError", "CorruptRecordError",
                 "RecordBatchTooLargeError")
    if hasattr(kafka.errors, name)
)


class KafkaBusProducer:
    def __init__(self, producer: KafkaProducer, headers: bool = True,
                 before_send: Callable[[str], None] | None = None) -> None:
        self._producer = producer
        self._futures: list = []
        self._rejected: list[int] = []
        self._headers = headers
        self._before_send = before_send

    def send(self, topic: str, key: str, value: bytes) -> None:
        if self._before_send is not None:
            self._before_send(topic)
        headers = envelope_headers(value) if self._headers else None
        position = len(self._futures)
        try:
            self._futures.append(self._producer.send(topic, key=key.encode(), value=value, headers=headers))
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


# Commit errors that mean "the group changed under you": rejoin by polling, no back-off.
REBALANCE_ERRORS: tuple[type[Exception], ...] = tuple(
    getattr(kafka.errors, name)
    for name in ("CommitFailedError", "RebalanceInProgressError", "IllegalGenerationError", "UnknownMemberIdError")
    if hasattr(kafka.errors, name)
)


class KafkaBusConsumer:
    """Manual commits; a member that cannot settle in its group reports it so that the loop replaces it.

    kafka-python keeps a JoinGroup in flight across polls for up to max_poll_interval_ms; when the group
    coordinator moves mid-rebalance that wait can outlive the fault, so after `stuck_after` seconds
    without a stable membership poll raises BusUnavailable and the caller builds a fresh consumer (which
    starts from the committed offsets: nothing skipped, at worst handled again and absorbed by the inbox).
    """

    def __init__(self, consumer: KafkaConsumer, *, commit_timeout_ms: int = 10_000,
                 stuck_after: float = 60.0) -> None:
        self._consumer = consumer
        self._commit_timeout_ms = commit_timeout_ms
        self._stuck_after = stuck_after
        self._unstable_since: float | None = None

    def poll(self, max_records: int = 100, timeout: float = 0.5) -> list[Record]:
        try:
            batches = self._consumer.poll(timeout_ms=int(timeout * 1000), max_records=max_records)
        except REBALANCE_ERRORS as exc:
            raise Rebalancing(f"Kafka consumer group rebalancing: {exc}") from exc
        except KafkaError as exc:
            raise BusUnavailable(f"Kafka poll failed: {exc}") from exc
        self._watch_membership()
        records: list[Record] = []
        for messages in batches.values():
            for message in messages:
                key = message.key.decode() if message.key is not None else None
                records.append(Record(message.topic, message.partition, message.offset, key, message.value))
        return records

    def _watch_membership(self) -> None:
        if self._consumer.group_metadata().state == MemberState.STABLE:
            self._unstable_since = None
            return
        now = time.monotonic()
        if self._unstable_since is None:
            self._unstable_since = now
        elif now - self._unstable_since > self._stuck_after:
            raise BusUnavailable(f"Kafka consumer not settled in its group for {now - self._unstable_since:.0f} s")

    def commit(self, record: Record) -> None:
        partition = TopicPartition(record.topic, record.partition)
        try:
            self._consumer.commit({partition: OffsetAndMetadata(record.offset + 1, "", -1)},
                                  timeout_ms=self._commit_timeout_ms)
        except REBALANCE_ERRORS as exc:
            raise Rebalancing(f"Kafka offset commit refused, group rebalancing: {exc}") from exc
        except KafkaError as exc:
            raise BusUnavailable(f"Kafka offset commit failed: {exc}") from exc

    def rewind(self, record: Record) -> None:
        partition = TopicPartition(record.topic, record.partition)
        if partition not in self._consumer.assignment():
            return  # no longer ours: its next owner starts from the committed offset
        self._consumer.seek(partition, record.offset)

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
        max_poll_interval_ms: int = 30_000,
        client_id: str = "relais",
        partitions: int = 3,
        security: dict[str, str] | None = None,
        topics_file: Path | None = DEFAULT_TOPICS_FILE,
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.api_version = api_version
        self.session_timeout_ms = session_timeout_ms
        self.max_poll_interval_ms = max_poll_interval_ms
        self.client_id = client_id
        self.partitions = partitions
        self.security = security or {}
        self.topic_specs = load_topic_specs(topics_file)
        self._ensured: set[str] = set()

    @property
    def modern(self) -> bool:
        """Record headers, the idempotent producer and the admin API (Kafka 0.11 and later)."""
        return self.api_version is None or self.api_version >= (0, 11)

    @property
    def _max_poll_interval_ms(self) -> int:
        """Brokers before 0.10.1 have no separate rebalance timeout: it is the session timeout."""
        if self.api_version is not None and self.api_version < (0, 10, 1):
            return self.session_timeout_ms
        return max(self.max_poll_interval_ms, self.session_timeout_ms)

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
                # Idempotence: a retried batch is written once, and up to 5 in flight keep per-key order.
                enable_idempotence=self.modern,
                max_in_flight_requests_per_connection=5 if self.modern else 1,
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
        return KafkaBusProducer(producer, headers=self.modern, before_send=self._ensure_quietly)

    def consumer(self, group_id: str, topics: Sequence[str]) -> KafkaBusConsumer:
        try:
            consumer = KafkaConsumer(
                *topics,
                group_id=group_id,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                session_timeout_ms=self.session_timeout_ms,
                heartbeat_interval_ms=max(self.session_timeout_ms // 3, 100),
                # Also the rebalance timeout: how long the coordinator waits for a stuck member before
                # going on without it (the 5-minute default stalled the whole group after a broker kill).
                max_poll_interval_ms=self._max_poll_interval_ms,
                # Brokers that answer a fetch only when its wait expires (Tansu) would add up to this much latency.
                fetch_max_wait_ms=100,
                bootstrap_timeout_ms=5_000,
                **self._common(),
            )
        except KafkaError as exc:
            raise BusUnavailable(f"cannot reach Kafka at {self.bootstrap_servers}: {exc}") from exc
        # A member unsettled for longer than the broker's own rebalance bound is stuck on the client side.
        return KafkaBusConsumer(consumer, stuck_after=2 * self._max_poll_interval_ms / 1000 + 10)

    def ensure_topics(self, topics: Sequence[str]) -> None:
        """Create missing topics with topics.yaml's partitions and configs, replication capped at the cluster's size."""
        if not self.modern:
            return  # Old brokers (0.9) have no admin API: they auto-create topics on first use.
        from kafka.admin import KafkaAdminClient, NewTopic

        admin = KafkaAdminClient(request_timeout_ms=10_000, bootstrap_timeout_ms=5_000, **self._common())
        try:
            # Refused creations (no Create right: the operator applied topics.yaml) are not errors here.
            existing = set(admin.list_topics())
            missing = [topic for topic in dict.fromkeys(topics) if topic not in existing]
            if missing:
                brokers = len(admin.describe_cluster()["brokers"]) or 1
                wanted = []
                for topic in missing:
                    spec = self.topic_specs.get(topic, TopicSpec(self.partitions, 3))
                    replication = min(spec.replication_factor, brokers)
                    config = dict(spec.config)
                    if "min.insync.replicas" in config:
                        config["min.insync.replicas"] = str(min(int(config["min.insync.replicas"]), replication))
                    wanted.append(NewTopic(topic, spec.partitions, replication, topic_configs=config))
                admin.create_topics(wanted, raise_errors=False)
            self._ensured.update(topics)
        except TopicAlreadyExistsError:
            self._ensured.update(topics)
        finally:
            admin.close()

    def _ensure_quietly(self, topic: str) -> None:
        """Before a producer's first send to a topic: create it as planned rather than let the broker auto-create it."""
        if topic in self._ensured or not self.modern:
            return
        try:
            self.ensure_topics([topic])
        except KafkaError as exc:  # broker unreachable: the send itself reports it, the next one tries again
            log.debug("topic %s not checked: %s", topic, exc)

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
