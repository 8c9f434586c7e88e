"""Consumer groups on a three-node Apache Kafka 4 cluster: the group coordinator dies, replicas join and leave.

Both tests stream records through an outbox relay into six-partition topics and handle them with
ConsumerLoops through the inbox (what every service does). They count the effects that committed and
assert: every record handled exactly once, in per-key order, and the stream went on.
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable

import pytest
from sqlmodel import SQLModel

from shared.bus.kafka import KafkaBus
from shared.bus.worker import ConsumerLoop, OutboxRelay
from shared.db.engine import make_engine, session_factory
from shared.db.tables import KERNEL_TABLES
from shared.db.uow import UnitOfWork, handle_once
from tests.infra.wait import wait_for

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.timeout(420)]

KEYS = 12
BATCH = 20


class Stream:
    """An outbox relay feeding ``topic``; ConsumerLoops of one group, each in its thread, handle it once."""

    def __init__(self, cluster, database_url: str) -> None:
        self.engine = make_engine(database_url)
        SQLModel.metadata.create_all(self.engine, tables=list(KERNEL_TABLES))
        self.sessions = session_factory(self.engine)
        self.bus = KafkaBus(cluster.bootstrap, session_timeout_ms=3_000, partitions=6)
        self.topic = f"group.{uuid.uuid4().hex[:8]}"
        self.group = f"group-{uuid.uuid4().hex[:6]}"
        self.bus.ensure_topics([self.topic, f"{self.topic}.dlq"])
        self.lock = threading.Lock()
        self.effects: list[tuple[str, int, str]] = []  # (key, n, replica) of each committed effect
        self.deliveries: Counter = Counter()
        self.relay = OutboxRelay(self.sessions, self.bus, "group")
        self.relay_stop = threading.Event()
        self.threads: list[threading.Thread] = [
            threading.Thread(target=self.relay.run, args=(self.relay_stop,), daemon=True)]
        self.threads[0].start()
        self.replicas: dict[str, tuple[ConsumerLoop, threading.Event, threading.Thread]] = {}

    def handler(self, replica: str) -> Callable:
        def handle(envelope) -> None:
            with self.lock:
                self.deliveries[envelope.id] += 1
            if handle_once(UnitOfWork(self.sessions, "group"), "group-consumer", envelope.id, lambda uow: None):
                with self.lock:
                    self.effects.append((envelope.key, envelope.data["n"], replica))

        return handle

    def join(self, replica: str) -> None:
        loop = ConsumerLoop(self.bus, self.group, {self.topic: self.handler(replica)}, max_attempts=3,
                            backoff_seconds=0.2)
        stop = threading.Event()
        thread = threading.Thread(target=loop.run, args=(stop,), name=f"replica-{replica}", daemon=True)
        thread.start()
        self.replicas[replica] = (loop, stop, thread)

    def leave(self, replica: str) -> None:
        """A clean shutdown: the loop finishes its record, closes its consumer, and the group rebalances."""
        _, stop, thread = self.replicas.pop(replica)
        stop.set()
        thread.join(timeout=30)
        assert not thread.is_alive(), f"replica {replica} did not stop"

    def write(self, start: int, count: int) -> None:
        for first in range(start, start + count, BATCH):
            with UnitOfWork(self.sessions, "group") as uow:
                for n in range(first, min(first + BATCH, start + count)):
                    uow.outbox.add(self.topic, f"patient-{n % KEYS}", "test.event", {"n": n})
                uow.commit()

    def count(self) -> int:
        with self.lock:
            return len(self.effects)

    def by_replica(self) -> Counter:
        with self.lock:
            return Counter(replica for _, _, replica in self.effects)

    def wait_handled(self, total: int, timeout: float, what: str) -> None:
        wait_for(lambda: self.count() >= total, timeout=timeout, interval=0.2,
                 message=lambda: f"{total} records handled {what} (handled {self.count()})")

    def assert_exactly_once_in_order(self, total: int) -> None:
        numbers = sorted(n for _, n, _ in self.effects)
        assert numbers == list(range(total)), (
            f"lost {sorted(set(range(total)) - set(numbers))[:10]}, "
            f"twice {[n for n, c in Counter(numbers).items() if c > 1][:10]}")
        per_key: dict[str, list[int]] = defaultdict(list)
        for key, n, _ in self.effects:
            per_key[key].append(n)
        for key, seen in per_key.items():
            assert seen == sorted(seen), f"order broken for {key}"

    def close(self) -> None:
        for replica in list(self.replicas):
            _, stop, _ = self.replicas[replica]
            stop.set()
        for loop, _, thread in self.replicas.values():
            thread.join(timeout=15)
            loop.close()
        self.relay_stop.set()
        self.threads[0].join(timeout=15)
        self.relay.close()
        self.engine.dispose()


@pytest.fixture
def stream(kafka_cluster, postgres_url):
    stream = Stream(kafka_cluster, postgres_url)
    yield stream
    stream.close()


def test_killing_the_group_coordinator_mid_rebalance_loses_and_duplicates_nothing(stream, kafka_cluster):
    total = 600
    stream.join("a")
    stream.join("b")
    stream.write(0, total // 3)
    stream.wait_handled(total // 6, 120, "before the fault")
    victim = kafka_cluster.coordinator_index(stream.group)
    stream.join("c")  # a rebalance begins...
    kafka_cluster.kill_node(victim)  # ...and the group's coordinator dies in the middle of it
    stream.write(total // 3, total // 3)  # the stream goes on while the coordinator is dead
    # Well under the 5-minute rebalance timeout that used to stall the group on a stuck member.
    stream.wait_handled(2 * total // 3, 120, f"after killing coordinator node {victim}")
    assert kafka_cluster.coordinator_index(stream.group) != victim
    kafka_cluster.start_node(victim, timeout=180)
    stream.leave("b")  # and a member leaves once the node is back: the group moves again
    stream.write(2 * total // 3, total - 2 * total // 3)
    stream.wait_handled(total, 120, f"after node {victim} came back")
    wait_for(lambda: stream.relay.pending() == 0, timeout=60, message="outbox drained")
    stream.assert_exactly_once_in_order(total)
    print(f"\ncoordinator node {victim} killed mid-rebalance: {total} handled once; deliveries "
          f"{sum(stream.deliveries.values())}, by replica {dict(stream.by_replica())}")


def test_a_replica_joining_and_one_leaving_share_the_work_and_lose_nothing(stream):
    total = 900
    stream.join("a")
    stream.write(0, total // 3)
    stream.wait_handled(total // 6, 120, "by the first replica")
    alone = stream.by_replica()
    stream.join("b")  # scale out mid-stream: the group rebalances over the six partitions
    stream.write(total // 3, total // 3)
    wait_for(lambda: stream.by_replica()["b"] > 0, timeout=120, message="the joining replica to take records")
    stream.wait_handled(total // 2, 120, "by both replicas")
    shared = stream.by_replica()
    stream.leave("a")  # scale in mid-stream: its partitions go to b
    stream.write(2 * total // 3, total - 2 * total // 3)
    stream.wait_handled(total, 180, "after replica a left")
    wait_for(lambda: stream.relay.pending() == 0, timeout=60, message="outbox drained")
    stream.assert_exactly_once_in_order(total)
    assert shared["a"] > alone["a"] and shared["b"] > 0, (alone, shared)  # both handled records while together
    after = stream.by_replica()
    assert after["b"] > shared["b"], after
    print(f"\nscale-out: handled by replica {dict(after)} (both while shared: {dict(shared)}); "
          f"deliveries {sum(stream.deliveries.values())}")
