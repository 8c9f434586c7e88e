"""The outbox relay sets aside rows the bus can never take, and the rows behind them keep flowing."""

from __future__ import annotations

from datetime import UTC, datetime

import kafka.errors
import pytest
from sqlalchemy import inspect, select
from sqlmodel import SQLModel

from shared.bus.base import MessageRejected
from shared.bus.kafka import KafkaBusProducer
from shared.bus.worker import DEAD_LETTERED, OutboxRelay
from shared.db import migrate
from shared.db.engine import make_engine, session_factory
from shared.db.tables import KERNEL_TABLES, OutboxDeadLetter, OutboxMessage
from shared.db.uow import UnitOfWork
from shared.errors import Unprocessable


class FakeProducer:
    def __init__(self, reject: set[int] | None = None) -> None:
        self.sent: list[tuple[str, str, bytes]] = []
        self.reject = reject or set()
        self._batch = 0

    def send(self, topic: str, key: str, value: bytes) -> None:
        self.sent.append((topic, key, value))
        self._batch += 1

    def flush(self, timeout: float = 30.0) -> None:
        batch, self._batch = self._batch, 0
        rejected = [i for i in range(batch) if self.sent[len(self.sent) - batch + i][1] in self.reject_keys]
        if rejected:
            raise MessageRejected(rejected)

    @property
    def reject_keys(self) -> set:
        return {str(k) for k in self.reject}

    def close(self) -> None:
        pass


class FakeBus:
    name = "fake"

    def __init__(self, producer: FakeProducer) -> None:
        self._producer = producer

    def producer(self) -> FakeProducer:
        return self._producer


@pytest.fixture
def sessions(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'svc.sqlite'}")
    SQLModel.metadata.create_all(engine, tables=list(KERNEL_TABLES))
    yield session_factory(engine)
    engine.dispose()


def add_row(sessions, key: str, value: str) -> None:
    with sessions() as session:
        session.add(OutboxMessage(message_id=f"m-{key}", topic="relais.test", key=key, event_type="Test",
                                  value=value, created_at=datetime.now(UTC)))
        session.commit()


def test_too_large_rows_are_set_aside_and_the_rest_flows(sessions):
    add_row(sessions, "1", '{"ok":1}')
    add_row(sessions, "2", '{"big":"' + "x" * 5000 + '"}')
    add_row(sessions, "3", '{"big":"' + "y" * 5000 + '"}')
    add_row(sessions, "4", '{"ok":4}')
    producer = FakeProducer()
    relay = OutboxRelay(sessions, FakeBus(producer), "test", max_message_bytes=1000)  # type: ignore[arg-type]
    before = DEAD_LETTERED.labels("test", "too_large")._value.get()
    assert relay.relay_once() == 4  # a lone surrogate cannot even be stored: Outbox.add refuses it (below)
    assert [key for _, key, _ in producer.sent] == ["1", "4"]
    assert relay.pending() == 0
    assert relay.dead_letters() == 2
    with sessions() as session:
        dead = {row.key: row.reason for row in session.execute(select(OutboxDeadLetter)).scalars()}
    assert dead == {"2": "too_large", "3": "too_large"}
    assert DEAD_LETTERED.labels("test", "too_large")._value.get() == before + 2
    add_row(sessions, "5", '{"ok":5}')
    assert relay.relay_once() == 1
    assert producer.sent[-1][1] == "5"


def test_a_row_the_broker_refuses_is_set_aside_not_retried_for_ever(sessions):
    for key in ("1", "2", "3"):
        add_row(sessions, key, '{"ok":true}')
    producer = FakeProducer(reject={2})
    relay = OutboxRelay(sessions, FakeBus(producer), "test")  # type: ignore[arg-type]
    assert relay.relay_once() == 3
    assert relay.pending() == 0
    with sessions() as session:
        assert [row.key for row in session.execute(select(OutboxDeadLetter)).scalars()] == ["2"]


class _TooLargeKafka:
    def __init__(self) -> None:
        self.calls = 0

    def send(self, topic, key, value, headers=None):
        self.calls += 1
        if len(value) > 10:
            raise kafka.errors.MessageSizeTooLargeError("too large for max_request_size")
        return _Done()

    def flush(self, timeout=None):
        pass


class _Done:
    def get(self, timeout=None):
        return None


def test_kafka_producer_reports_an_oversized_record_as_rejected_not_as_bus_down():
    producer = KafkaBusProducer(_TooLargeKafka())  # type: ignore[arg-type]
    producer.send("t", "a", b"small")
    producer.send("t", "b", b"x" * 100)
    producer.send("t", "c", b"small")
    with pytest.raises(MessageRejected) as raised:
        producer.flush()
    assert raised.value.positions == [1]


def test_intake_refuses_an_envelope_the_bus_could_never_carry(sessions):
    with UnitOfWork(sessions, "test", max_message_bytes=2000) as uow:
        with pytest.raises(Unprocessable) as raised:
            uow.outbox.add("relais.test", "k", "Test", {"activities": ["x" * 100] * 50})
        assert raised.value.status_code == 422
        with pytest.raises(Unprocessable):
            uow.outbox.add("relais.test", "k", "Test", {"text": "\ud800"})


@pytest.mark.parametrize("service", ["admissions", "discharge", "snp", "notifications"])
def test_every_service_migration_creates_the_dead_letter_table(tmp_path, service):
    engine = make_engine(f"sqlite:///{tmp_path / 'm.sqlite'}")
    migrate.upgrade(service, engine)
    columns = {c["name"] for c in inspect(engine).get_columns("outbox_dead_letter")}
    assert columns == {c.name for c in OutboxDeadLetter.__table__.columns}  # type: ignore[attr-defined]
    engine.dispose()
