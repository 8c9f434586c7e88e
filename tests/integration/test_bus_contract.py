"""One contract for every bus: the embedded log, Tansu and Apache Kafka 4 must all honour it."""

from __future__ import annotations

import json
import threading
import uuid
from collections import defaultdict

import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient
from sqlalchemy import func, select
from sqlmodel import SQLModel

from shared.bus.base import Bus, BusUnavailable, dlq_topic
from shared.bus.embedded import EmbeddedBus
from shared.bus.envelope import Envelope
from shared.bus.kafka import KafkaBus
from shared.bus.worker import ConsumerLoop, OutboxRelay
from shared.db.engine import make_engine, session_factory
from shared.db.tables import KERNEL_TABLES, InboxMessage
from shared.db.uow import UnitOfWork, handle_once
from shared.errors import TransientError
from tests.infra.wait import wait_for

BUSES = ["embedded", "tansu", "kafka4"]


@pytest.fixture(params=BUSES)
def bus(request, tmp_path) -> Bus:
    if request.param == "embedded":
        bus = EmbeddedBus(f"sqlite:///{tmp_path / 'bus.sqlite'}")
    else:
        broker = request.getfixturevalue(request.param)
        bus = KafkaBus(broker.bootstrap, api_version=broker.api_version, session_timeout_ms=2_000)
    bus.broker_kind = request.param
    yield bus
    bus.close()


@pytest.fixture
def service_db(postgres_url):
    engine = make_engine(postgres_url)
    SQLModel.metadata.create_all(engine, tables=list(KERNEL_TABLES))
    yield engine
    engine.dispose()


def fresh_topic(bus: Bus) -> str:
    topic = f"contract.{uuid.uuid4().hex[:10]}"
    bus.ensure_topics([topic, dlq_topic(topic)])
    return topic


def publish(bus: Bus, topic: str, items: list[tuple[str, dict]]) -> list[Envelope]:
    producer = bus.producer()
    envelopes = []
    for key, data in items:
        envelope = Envelope(type="test.event", key=key, data=data, source="contract")
        producer.send(topic, key, envelope.to_json().encode())
        envelopes.append(envelope)
    producer.flush()
    producer.close()
    return envelopes


def drain(loop: ConsumerLoop, until, timeout: float = 30.0) -> None:
    wait_for(lambda: loop.run_once(timeout=0.2) >= 0 and until(), timeout=timeout, interval=0, message="consumer")


def test_messages_of_one_key_arrive_in_the_order_they_were_sent(bus):
    topic = fresh_topic(bus)
    items = [(f"patient-{i % 5}", {"n": i}) for i in range(60)]
    publish(bus, topic, items)
    seen: dict[str, list[int]] = defaultdict(list)
    loop = ConsumerLoop(bus, f"g-{uuid.uuid4().hex[:6]}", {topic: lambda env: seen[env.key].append(env.data["n"])})
    drain(loop, lambda: sum(map(len, seen.values())) == 60)
    loop.close()
    for key, numbers in seen.items():
        assert numbers == [n for k, n in ((k, d["n"]) for k, d in items) if k == key]


def test_a_group_resumes_from_its_committed_position_after_a_restart(bus):
    topic = fresh_topic(bus)
    publish(bus, topic, [("k", {"n": i}) for i in range(10)])
    group = f"g-{uuid.uuid4().hex[:6]}"
    first: list[int] = []
    loop = ConsumerLoop(bus, group, {topic: lambda env: first.append(env.data["n"])})
    drain(loop, lambda: len(first) == 10)
    loop.close()
    publish(bus, topic, [("k", {"n": i}) for i in range(10, 15)])
    second: list[int] = []
    loop = ConsumerLoop(bus, group, {topic: lambda env: second.append(env.data["n"])})
    drain(loop, lambda: len(second) >= 5)
    loop.close()
    assert first == list(range(10))
    assert second == [10, 11, 12, 13, 14]


def test_a_transient_failure_is_retried_without_advancing_the_offset(bus):
    topic = fresh_topic(bus)
    publish(bus, topic, [("k", {"n": i}) for i in range(5)])
    group = f"g-{uuid.uuid4().hex[:6]}"
    handled: list[int] = []
    failures = {"left": 4}

    def flaky(env: Envelope) -> None:
        if env.data["n"] == 2 and failures["left"] > 0:
            failures["left"] -= 1
            raise TransientError("database briefly unavailable")
        handled.append(env.data["n"])

    # Two attempts per delivery: the record must be rewound once and delivered again.
    loop = ConsumerLoop(bus, group, {topic: flaky}, max_attempts=2, backoff_seconds=0.01)
    drain(loop, lambda: len(handled) == 5)
    loop.close()
    assert handled == [0, 1, 2, 3, 4]
    assert failures["left"] == 0


def test_a_poison_message_goes_to_the_dead_letter_topic_and_the_stream_goes_on(bus):
    topic = fresh_topic(bus)
    producer = bus.producer()
    producer.send(topic, "k", b"{not json")
    producer.flush()
    producer.close()
    publish(bus, topic, [("k", {"n": 1}), ("k", {"n": "boom"}), ("k", {"n": 3})])
    handled: list[int] = []

    def strict(env: Envelope) -> None:
        handled.append(int(env.data["n"]))

    loop = ConsumerLoop(bus, f"g-{uuid.uuid4().hex[:6]}", {topic: strict}, max_attempts=1)
    drain(loop, lambda: handled == [1, 3])
    loop.close()
    dead: list[dict] = []
    dlq = ConsumerLoop(bus, f"d-{uuid.uuid4().hex[:6]}", {dlq_topic(topic): lambda env: None})
    # Dead letters are not envelopes: read raw records instead.
    wait_for(
        lambda: dead.extend(json.loads(r.value) for r in dlq.consumer.poll(timeout=0.2)) or len(dead) >= 2,
        timeout=30,
        interval=0,
    )
    dlq.close()
    assert [entry["poison"] for entry in dead] == [True, False]
    assert "ValueError" in dead[1]["error"]
    assert all(entry["topic"] == topic for entry in dead)


def test_a_message_delivered_twice_is_handled_once(bus, service_db):
    topic = fresh_topic(bus)
    envelope = Envelope(type="test.event", key="k", data={"n": 1}, source="contract")
    producer = bus.producer()
    for _ in range(2):
        producer.send(topic, "k", envelope.to_json().encode())
    producer.flush()
    producer.close()
    effects: list[str] = []
    sessions = session_factory(service_db)

    def idempotent(env: Envelope) -> None:
        handle_once(UnitOfWork(sessions, "contract"), "contract-consumer", env.id, lambda uow: effects.append(env.id))

    loop = ConsumerLoop(bus, f"g-{uuid.uuid4().hex[:6]}", {topic: idempotent})
    handled = {"n": 0}
    wait_for(lambda: (handled.__setitem__("n", handled["n"] + loop.run_once(timeout=0.2)) or handled["n"] >= 2),
             timeout=30, interval=0)
    loop.close()
    assert effects == [envelope.id]
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(InboxMessage)) == 1


def test_an_outbox_row_from_a_rolled_back_transaction_is_never_published(bus, service_db):
    topic = fresh_topic(bus)
    sessions = session_factory(service_db)
    with UnitOfWork(sessions, "contract") as uow:
        uow.outbox.add(topic, "k", "test.event", {"n": "rolled back"})
        uow.rollback()
    with UnitOfWork(sessions, "contract") as uow:
        uow.outbox.add(topic, "k", "test.event", {"n": "committed"})
        uow.commit()
    relay = OutboxRelay(sessions, bus, "contract")
    assert relay.relay_once() == 1
    assert relay.relay_once() == 0
    relay.close()
    seen: list = []
    loop = ConsumerLoop(bus, f"g-{uuid.uuid4().hex[:6]}", {topic: lambda env: seen.append(env.data["n"])})
    drain(loop, lambda: seen)
    # One more poll: nothing else may arrive.
    loop.run_once(timeout=1.0)
    loop.close()
    assert seen == ["committed"]


@pytest.mark.parametrize("bus", ["tansu", "kafka4"], indirect=True)
def test_outbox_rows_wait_while_the_broker_is_down_and_all_arrive_once_it_is_back(bus, service_db, request):
    broker = request.getfixturevalue(bus.broker_kind)
    topic = fresh_topic(bus)
    sessions = session_factory(service_db)
    relay = OutboxRelay(sessions, bus, "contract")
    broker.stop()
    try:
        with UnitOfWork(sessions, "contract") as uow:
            for n in range(20):
                uow.outbox.add(topic, f"k{n % 3}", "test.event", {"n": n})
            uow.commit()
        with pytest.raises(BusUnavailable):
            relay.relay_once()
        assert relay.pending() == 20
    finally:
        broker.start()
    bus.ensure_topics([topic])
    stop = threading.Event()
    worker = threading.Thread(target=relay.run, args=(stop,), daemon=True)
    worker.start()
    wait_for(lambda: relay.pending() == 0, timeout=60, message="outbox drained after the broker came back")
    stop.set()
    worker.join(timeout=10)
    seen: list[int] = []
    loop = ConsumerLoop(bus, f"g-{uuid.uuid4().hex[:6]}", {topic: lambda env: seen.append(env.data["n"])})
    drain(loop, lambda: len(seen) >= 20, timeout=60)
    loop.run_once(timeout=0.5)
    loop.close()
    assert sorted(seen) == list(range(20))


def test_on_kafka_4_records_carry_the_envelope_metadata_in_headers(kafka4):
    bus = KafkaBus(kafka4.bootstrap, session_timeout_ms=2_000)
    topic = fresh_topic(bus)
    [envelope] = publish(bus, topic, [("patient-1", {"n": 1})])
    consumer = KafkaConsumer(**kafka4.client_config(), auto_offset_reset="earliest", enable_auto_commit=False)
    consumer.assign([TopicPartition(topic, p) for p in range(bus.partitions)])
    records: list = []
    wait_for(lambda: records.extend(r for rs in consumer.poll(timeout_ms=200).values() for r in rs) or records,
             timeout=30, interval=0, message="the record")
    consumer.close()
    headers = {name: value.decode() for name, value in records[0].headers}
    assert headers["relais-id"] == envelope.id
    assert headers["relais-type"] == "test.event"
    assert headers["relais-source"] == "contract"
    assert headers["content-type"] == "application/json"


def test_on_kafka_4_topics_get_the_partitions_and_configs_of_the_topic_plan(kafka4):
    bus = KafkaBus(kafka4.bootstrap, session_timeout_ms=2_000)
    spec = bus.topic_specs["relais.careteam"]
    assert spec.partitions == 6 and spec.config["cleanup.policy"] == "compact"
    bus.ensure_topics(["relais.careteam", "relais.notify.team"])
    admin = KafkaAdminClient(**kafka4.client_config())
    try:
        described = {t["name"]: t for t in admin.describe_topics(["relais.careteam", "relais.notify.team"])}
        configs = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, "relais.careteam")])
    finally:
        admin.close()
    assert len(described["relais.careteam"]["partitions"]) == 6
    assert len(described["relais.notify.team"]["partitions"]) == 6
    entries = {name: entry["value"] for name, entry in configs["topic"]["relais.careteam"].items()}
    assert entries["cleanup.policy"] == "compact"
    assert entries["min.compaction.lag.ms"] == "3600000"
    # One broker: replication and min.insync.replicas are capped at what the cluster can hold.
    assert entries["min.insync.replicas"] == "1"
    assert {len(p["replica_nodes"]) for p in described["relais.careteam"]["partitions"]} == {1}


def test_on_kafka_4_a_producer_creates_its_topic_from_the_plan_before_the_first_send(kafka4):
    bus = KafkaBus(kafka4.bootstrap, session_timeout_ms=2_000)
    publish(bus, "relais.snp", [("patient-2", {"n": 2})])
    admin = KafkaAdminClient(**kafka4.client_config())
    try:
        [described] = admin.describe_topics(["relais.snp"])
    finally:
        admin.close()
    assert len(described["partitions"]) == bus.topic_specs["relais.snp"].partitions == 6
