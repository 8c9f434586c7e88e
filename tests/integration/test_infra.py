"""Smoke tests for the real parts the other tests stand on: each server starts, serves and stops."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from sqlalchemy import create_engine, text

from tests.infra.wait import wait_for


def _produce(broker, topic: str, values: list[bytes]) -> None:
    producer = KafkaProducer(**broker.client_config(), acks="all", max_block_ms=10_000)
    try:
        for value in values:
            producer.send(topic, key=b"k", value=value).get(timeout=10)
    finally:
        producer.close(timeout=5)


def _consume_all(broker, topic: str, expected: int, timeout: float = 30.0) -> list[bytes]:
    """Read every partition of ``topic`` from the beginning until ``expected`` values arrived."""
    consumer = KafkaConsumer(**broker.client_config(), enable_auto_commit=False,
                             consumer_timeout_ms=500, request_timeout_ms=5000)
    try:
        partitions = wait_for(lambda: consumer.partitions_for_topic(topic), timeout=timeout,
                              message=f"partitions of {topic}")
        consumer.assign([TopicPartition(topic, p) for p in partitions])
        consumer.seek_to_beginning()
        values: list[bytes] = []

        def got_all() -> bool:
            for records in consumer.poll(timeout_ms=200).values():
                values.extend(record.value for record in records)
            return len(values) >= expected

        wait_for(got_all, timeout=timeout, interval=0, message=f"{expected} message(s) on {topic}")
        return values
    finally:
        consumer.close()


def test_postgres_url_connects_and_selects(postgres_url):
    engine = create_engine(postgres_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("select 1")).scalar() == 1
            assert conn.execute(text("select current_database()")).scalar() == postgres_url.rsplit("/", 1)[1]
    finally:
        engine.dispose()


def test_postgres_restart_keeps_committed_rows(postgres):
    if not postgres.restartable:
        pytest.fail(f"this PostgreSQL ({postgres.kind}) cannot be restarted by the tests")
    url = postgres.create_database(f"restart_{uuid.uuid4().hex[:8]}")
    database = url.rsplit("/", 1)[1]
    with postgres.connect(database, autocommit=True) as conn:
        conn.execute("create table kept (n int primary key)")
        conn.execute("insert into kept select generate_series(1, 100)")
    postgres.restart()
    assert postgres.running
    with postgres.connect(database) as conn:
        assert conn.execute("select count(*), sum(n) from kept").fetchone() == (100, 5050)
    postgres.restart(mode="immediate")  # crash-like stop: WAL recovery on start
    with postgres.connect(database) as conn:
        assert conn.execute("select count(*) from kept").fetchone() == (100,)


def test_a_commit_acknowledged_just_before_a_database_crash_survives_it(postgres):
    """Relais answers 200 once its transaction commits: the test cluster must not acknowledge a commit it
    has not written (synchronous_commit off would lose the last few hundred milliseconds on a crash)."""
    if not postgres.restartable:
        pytest.fail(f"this PostgreSQL ({postgres.kind}) cannot be restarted by the tests")
    database = postgres.create_database(f"crash_{uuid.uuid4().hex[:8]}").rsplit("/", 1)[1]
    with postgres.connect(database, autocommit=True) as conn:
        conn.execute("create table acknowledged (n int primary key)")
        for n in range(200):  # one transaction each, the last ones a few milliseconds before the crash
            conn.execute("insert into acknowledged values (%s)", (n,))
    postgres.restart(mode="immediate")
    with postgres.connect(database) as conn:
        assert conn.execute("select count(*) from acknowledged").fetchone() == (200,)


def test_relais_warns_when_postgres_acknowledges_commits_it_has_not_written(postgres_url, caplog):
    from shared.db.engine import commits_are_durable

    durable = create_engine(postgres_url)
    careless = create_engine(postgres_url, connect_args={"options": "-csynchronous_commit=off"})
    try:
        assert commits_are_durable(durable)
        assert "synchronous_commit" not in caplog.text
        assert not commits_are_durable(careless)
        assert "synchronous_commit is off" in caplog.text
    finally:
        durable.dispose()
        careless.dispose()


def test_postgres_connection_fails_while_stopped(postgres):
    postgres.stop()
    try:
        with pytest.raises(psycopg.OperationalError):
            postgres.connect().close()
    finally:
        postgres.start()
    with postgres.connect() as conn:
        assert conn.execute("select 1").fetchone() == (1,)


def test_tansu_produce_then_consume_one_message(tansu):
    assert tansu.api_version is None
    topic = f"smoke-{uuid.uuid4().hex[:8]}"
    _produce(tansu, topic, [b"hello"])
    assert _consume_all(tansu, topic, expected=1) == [b"hello"]


def test_kafka4_keeps_messages_across_a_broker_restart(kafka4):
    topic = f"smoke-{uuid.uuid4().hex[:8]}"
    _produce(kafka4, topic, [b"before-restart"])
    kafka4.stop()
    assert not kafka4.running
    kafka4.start()
    assert _consume_all(kafka4, topic, expected=1) == [b"before-restart"]


def test_kafka4_recovers_from_a_broker_crash(kafka4):
    topic = f"smoke-{uuid.uuid4().hex[:8]}"
    _produce(kafka4, topic, [b"one", b"two"])
    kafka4.kill()
    kafka4.start()
    assert _consume_all(kafka4, topic, expected=2) == [b"one", b"two"]


def test_kafka4_is_the_pinned_apache_kafka_in_kraft_mode(kafka4):
    from tests.infra.kafka4 import KAFKA_VERSION

    log = (kafka4.nodes[0].directory / "kafka.log").read_text()
    assert f"Kafka version: {KAFKA_VERSION}" in log
    assert "KafkaRaftServer" in log
    assert KAFKA_VERSION.startswith("4.")


def test_kafka_broker_contract_smoke(kafka_broker):
    topic = f"smoke-{uuid.uuid4().hex[:8]}"
    _produce(kafka_broker, topic, [b"a", b"b", b"c"])
    assert _consume_all(kafka_broker, topic, expected=3) == [b"a", b"b", b"c"]


def test_a_kafka_cluster_id_never_reads_as_an_option():
    """kafka-storage took an id starting with "-" for an option and refused to format (a fresh-clone run lost its
    three-node cluster that way); Kafka's own ids never start with "-". 5,000 ids: the old rule would fail."""
    from tests.infra.kafka4 import _cluster_id

    ids = [_cluster_id() for _ in range(5000)]
    assert not [i for i in ids if i.startswith("-")]
    assert all(len(i) == 22 for i in ids) and len(set(ids)) == len(ids)


def test_a_cut_of_the_proxy_reaches_a_client_waiting_for_an_answer():
    """The fault campaign's database-path cut must break a connection whose client waits for an answer (a worker in
    the middle of a query): it once left such a client blocked for ever, and two consumer groups with it."""
    import socket
    import threading

    from tests.infra.proxy import TcpProxy

    silent = socket.create_server(("127.0.0.1", 0))  # accepts, reads, never answers: a query in progress
    held: list[socket.socket] = []
    threading.Thread(target=lambda: held.append(silent.accept()[0]), daemon=True).start()
    proxy = TcpProxy(silent.getsockname()[1])
    client = socket.create_connection(("127.0.0.1", proxy.port), timeout=30)
    try:
        client.sendall(b"SELECT 1")
        wait_for(lambda: held, timeout=10, message="the proxied connection")
        outcome: list[object] = []

        def wait_for_answer() -> None:
            try:
                outcome.append(client.recv(1))
            except OSError as exc:
                outcome.append(exc)

        waiter = threading.Thread(target=wait_for_answer, daemon=True)
        waiter.start()
        proxy.cut()
        waiter.join(timeout=10)
        assert outcome, "the client is still waiting for an answer through a cut path"
        assert outcome[0] == b"" or isinstance(outcome[0], ConnectionResetError), outcome
    finally:
        client.close()
        proxy.close()
        silent.close()
        for sock in held:
            sock.close()
