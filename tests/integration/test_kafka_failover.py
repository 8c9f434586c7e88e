"""Broker failover on a three-node Apache Kafka 4 cluster (KRaft, replication 3, min.insync.replicas 2).

An outbox relay publishes a stream (idempotent producer, acks=all) while a consumer group handles it
through the inbox; mid-stream the leader of a partition is killed with SIGKILL. Every message must be
handled exactly once, in order per key, and the stream must go on while the node is down.
"""

from __future__ import annotations

import threading
import uuid
from collections import defaultdict

import pytest
from sqlmodel import SQLModel

from shared.bus.kafka import KafkaBus
from shared.bus.worker import ConsumerLoop, OutboxRelay
from shared.db.engine import make_engine, session_factory
from shared.db.tables import KERNEL_TABLES
from shared.db.uow import UnitOfWork, handle_once
from tests.infra.wait import wait_for

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.timeout(420)]

TOTAL = 600
KEYS = 12
BATCH = 20


def test_killing_a_partition_leader_mid_stream_loses_and_duplicates_nothing(kafka_cluster, postgres_url):
    engine = make_engine(postgres_url)
    SQLModel.metadata.create_all(engine, tables=list(KERNEL_TABLES))
    sessions = session_factory(engine)
    bus = KafkaBus(kafka_cluster.bootstrap, session_timeout_ms=3_000, partitions=6)
    topic = f"failover.{uuid.uuid4().hex[:8]}"
    bus.ensure_topics([topic, f"{topic}.dlq"])
    admin = kafka_cluster.admin()
    try:
        [described] = admin.describe_topics([topic])
    finally:
        admin.close()
    assert {len(p["replica_nodes"]) for p in described["partitions"]} == {3}

    handled: dict[str, list[int]] = defaultdict(list)
    effects: list[str] = []
    lock = threading.Lock()

    def handler(envelope) -> None:
        def effect(uow) -> None:
            with lock:
                effects.append(envelope.id)
                handled[envelope.key].append(envelope.data["n"])

        handle_once(UnitOfWork(sessions, "failover"), "failover-consumer", envelope.id, effect)

    stop = threading.Event()
    relay = OutboxRelay(sessions, bus, "failover")
    loop = ConsumerLoop(bus, f"failover-{uuid.uuid4().hex[:6]}", {topic: handler}, max_attempts=3,
                        backoff_seconds=0.2)
    workers = [threading.Thread(target=relay.run, args=(stop,), daemon=True),
               threading.Thread(target=loop.run, args=(stop,), daemon=True)]
    for worker in workers:
        worker.start()

    def write(start: int, count: int) -> None:
        for first in range(start, start + count, BATCH):
            with UnitOfWork(sessions, "failover") as uow:
                for n in range(first, min(first + BATCH, start + count)):
                    uow.outbox.add(topic, f"patient-{n % KEYS}", "test.event", {"n": n})
                uow.commit()

    def count() -> int:
        with lock:
            return len(effects)

    try:
        write(0, TOTAL // 2)
        wait_for(lambda: count() >= TOTAL // 4, timeout=120, message="the stream to flow")
        victim = kafka_cluster.leader_index(topic, 0)
        kafka_cluster.kill_node(victim)
        write(TOTAL // 2, TOTAL // 2)  # the stream goes on while the leader is dead
        wait_for(lambda: count() >= TOTAL, timeout=180, interval=0.2,
                 message=lambda: f"all {TOTAL} messages after killing node {victim} (handled {count()})")
        assert not kafka_cluster.nodes[victim].alive, "the stream finished on two brokers"
        new_leader = kafka_cluster.leader_index(topic, 0)
        assert new_leader != victim
        wait_for(lambda: relay.pending() == 0, timeout=60, message="outbox drained")
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=15)
        loop.close()
        relay.close()
        engine.dispose()

    assert len(effects) == len(set(effects)) == TOTAL
    for key, numbers in handled.items():
        expected = [n for n in range(TOTAL) if f"patient-{n % KEYS}" == key]
        assert numbers == expected, f"order broken for {key}"
