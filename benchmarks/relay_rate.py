"""Outbox relay rate (rows/s published to Kafka and marked sent by shared.bus.worker.OutboxRelay) beside a raw
kafka-python producer (acks=all) sending the same records, in the same run, to the same Tansu broker.

    .venv/bin/python benchmarks/relay_rate.py [--rows 20000] [--database-url postgresql://...]

The outbox is filled straight into an admissions database (SQLite by default) with notification-sized values
(a full admission Bundle, about 4 kB), keyed by recipient over 50 recipients on three topics.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kafka import KafkaProducer
from sqlalchemy import insert

from shared.bus.envelope import Envelope
from shared.bus.kafka import KafkaBus
from shared.bus.worker import OutboxRelay
from shared.db import migrate
from shared.db.engine import make_engine, session_factory
from shared.db.tables import OutboxMessage
from tests import factories as f
from tests.infra.brokers import TansuBroker

TOPICS = ("bench.notify.team", "bench.notify.cpts", "bench.notify.dac")


def records(count: int) -> list[tuple[str, str, bytes]]:
    payload = f.admission_message(conditions=[("E11", "Diabète sucré de type 2")])
    out = []
    for index in range(count):
        recipient = f"org-{index % 50}"
        envelope = Envelope(type="admission.recorded", key=recipient, data={"payload": payload}, source="bench")
        out.append((TOPICS[index % 3], recipient, envelope.to_json().encode()))
    return out


def fill(engine, rows: list[tuple[str, str, bytes]]) -> None:
    now = datetime.now(UTC)
    values = [
        {
            "message_id": str(uuid.uuid4()),
            "topic": topic,
            "key": key,
            "event_type": "admission.recorded",
            "value": value.decode(),
            "created_at": now,
        }
        for topic, key, value in rows
    ]
    with engine.begin() as connection:
        for start in range(0, len(values), 5000):
            connection.execute(insert(OutboxMessage.__table__), values[start : start + 5000])


def relay_rate(bootstrap: str, rows: list, database_url: str | None, batch_size: int) -> float:
    url = database_url or f"sqlite:///{Path(tempfile.mkdtemp(prefix='relais-bench-relay-')) / 'admissions.sqlite'}"
    engine = make_engine(url)
    migrate.upgrade("admissions", engine)
    fill(engine, rows)
    relay = OutboxRelay(session_factory(engine), KafkaBus(bootstrap), "bench", batch_size)
    relay.relay_once()  # connect and fetch metadata outside the measurement (rows count below)
    published = 0
    started = time.perf_counter()
    while sent := relay.relay_once():
        published += sent
    elapsed = time.perf_counter() - started
    relay.close()
    assert relay.pending() == 0
    engine.dispose()
    return published / elapsed


def raw_rate(bootstrap: str, rows: list) -> float:
    producer = KafkaProducer(bootstrap_servers=[bootstrap], acks="all", linger_ms=2)
    topic, key, value = rows[0]
    producer.send(topic, key=key.encode(), value=value).get(timeout=30)  # connect and fetch metadata first
    started = time.perf_counter()
    futures = [producer.send(topic, key=key.encode(), value=value) for topic, key, value in rows[1:]]
    producer.flush(timeout=120)
    for future in futures:
        future.get(timeout=0)
    elapsed = time.perf_counter() - started
    producer.close()
    return (len(rows) - 1) / elapsed


def measure(count: int = 20_000, database_url: str | None = None, batch_size: int | None = None) -> dict[str, float]:
    from shared.settings import RelaisSettings

    batch_size = batch_size or RelaisSettings().relay_batch_size
    rows = records(count)
    broker = TansuBroker()
    broker.start()
    try:
        KafkaBus(broker.bootstrap).ensure_topics(TOPICS)
        raw = raw_rate(broker.bootstrap, rows)
        relay = relay_rate(broker.bootstrap, rows, database_url, batch_size)
    finally:
        broker.close()
    return {
        "relay_rate": relay,
        "raw_rate": raw,
        "ratio": relay / raw,
        "rows": count,
        "batch_size": batch_size,
        "value_bytes": sum(len(r[2]) for r in rows) / len(rows),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--database-url")
    parser.add_argument("--batch-size", type=int)
    args = parser.parse_args()
    r = measure(args.rows, args.database_url, args.batch_size)
    print(f"{r['rows']} records of {r['value_bytes']:.0f} bytes; relay batch {r['batch_size']}")
    print(f"outbox relay:        {r['relay_rate']:8.0f} rows/s")
    print(f"raw kafka-python:    {r['raw_rate']:8.0f} records/s")
    print(f"ratio:               {r['ratio']:8.1%}")


if __name__ == "__main__":
    main()
