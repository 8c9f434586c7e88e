"""Background workers: the outbox relay and the consumer loop (retry, dead-letter, commit after handling)."""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
import traceback
from collections.abc import Callable

from prometheus_client import Counter, Gauge
from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlmodel import Session, col
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from shared.bus.base import Bus, BusUnavailable, Consumer, MessageRejected, Producer, Rebalancing, Record, dlq_topic
from shared.bus.envelope import DEFAULT_MAX_MESSAGE_BYTES, Envelope, PoisonMessage
from shared.clock import instant, utcnow
from shared.db.engine import is_postgres
from shared.db.tables import OutboxDeadLetter, OutboxMessage
from shared.errors import TransientError

log = logging.getLogger(__name__)

RELAYED = Counter("relais_outbox_relayed_total", "Outbox messages published to the bus", ["source"])
DEAD_LETTERED = Counter(
    "relais_outbox_dead_lettered_total", "Outbox rows the bus can never take, set aside", ["source", "reason"]
)
HANDLED = Counter("relais_messages_handled_total", "Bus messages handled", ["consumer", "outcome"])
WORKER_RESTARTS = Counter("relais_worker_restarts_total", "Background workers restarted after dying", ["worker"])
WORKER_UP = Gauge("relais_worker_up", "1 while a background worker runs, 0 while it waits to restart", ["worker"])

# Failures that say "try again later" rather than "this message is wrong".
# Connection-level database errors (a restart, a cut) are never the message's fault.
TRANSIENT = (TransientError, BusUnavailable, OperationalError, InterfaceError, DisconnectionError)

Handler = Callable[[Envelope], None]


class OutboxRelay:
    """Publishes unpublished outbox rows in order and marks them published; crashes only cause re-sends."""

    def __init__(
        self,
        session_factory: Callable[[], Session],
        bus: Bus,
        source: str,
        batch_size: int = 200,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        self._session_factory = session_factory
        self._bus = bus
        self._source = source
        self._batch_size = batch_size
        self._max_bytes = max_message_bytes
        self._producer: Producer | None = None

    def relay_once(self) -> int:
        """Publish one batch; rows the bus can never take go to `outbox_dead_letter`. Returns rows handled."""
        with self._session_factory() as session:
            query = (
                select(OutboxMessage)
                .where(col(OutboxMessage.published_at).is_(None))
                .order_by(col(OutboxMessage.seq))
            )
            query = query.limit(self._batch_size)
            if is_postgres(session.get_bind()):
                # A second replica waits here instead of publishing the same rows out of order.
                query = query.with_for_update()
            rows = list(session.execute(query).scalars())
            if not rows:
                session.rollback()
                return 0
            sent: list[OutboxMessage] = []
            dead: list[tuple[OutboxMessage, str]] = []
            try:
                producer = self._get_producer()
                for row in rows:
                    try:
                        payload = row.value.encode()
                    except UnicodeEncodeError:
                        dead.append((row, "unencodable"))
                        continue
                    if len(payload) > self._max_bytes:
                        dead.append((row, "too_large"))
                        continue
                    producer.send(row.topic, row.key, payload)
                    sent.append(row)
                try:
                    producer.flush()
                except MessageRejected as rejected:
                    dead.extend((sent[i], "rejected") for i in rejected.positions if i < len(sent))
                    refused = {sent[i].seq for i in rejected.positions if i < len(sent)}
                    sent = [row for row in sent if row.seq not in refused]
            except BusUnavailable:
                self._reset_producer()
                session.rollback()
                raise
            if sent:
                seqs = [row.seq for row in sent]
                session.execute(
                    update(OutboxMessage)
                    .where(col(OutboxMessage.seq).in_(seqs))
                    .values(published_at=utcnow())
                )
            self._set_aside(session, dead)
            session.commit()
        RELAYED.labels(self._source).inc(len(sent))
        for row, reason in dead:
            DEAD_LETTERED.labels(self._source, reason).inc()
            log.error("outbox %s: row %s (%s, %d bytes) set aside: %s", self._source, row.seq, row.event_type,
                      len(row.value), reason)
        return len(rows)

    def _set_aside(self, session: Session, dead: list[tuple[OutboxMessage, str]]) -> None:
        now = utcnow()
        for row, reason in dead:
            session.add(
                OutboxDeadLetter(
                    outbox_seq=row.seq or 0, message_id=row.message_id, topic=row.topic, key=row.key,
                    event_type=row.event_type, value=row.value, size=len(row.value), reason=reason,
                    created_at=row.created_at, dead_at=now,
                )
            )
        if dead:
            seqs = [row.seq for row, _ in dead]
            session.execute(delete(OutboxMessage).where(col(OutboxMessage.seq).in_(seqs)))

    def dead_letters(self) -> int:
        with self._session_factory() as session:
            return session.execute(select(func.count()).select_from(OutboxDeadLetter)).scalar_one()

    def pending(self) -> int:
        with self._session_factory() as session:
            query = select(func.count()).select_from(OutboxMessage)
            query = query.where(col(OutboxMessage.published_at).is_(None))
            return session.execute(query).scalar_one()

    def _get_producer(self) -> Producer:
        if self._producer is None:
            self._producer = self._bus.producer()
        return self._producer

    def _reset_producer(self) -> None:
        if self._producer is not None:
            try:
                self._producer.close()
            except Exception:
                log.debug("closing a broken producer failed", exc_info=True)
        self._producer = None

    def close(self) -> None:
        self._reset_producer()

    def run(self, stop: threading.Event, wakeup: Callable[[float], bool] | None = None, idle: float = 0.05) -> None:
        backoff = idle
        while not stop.is_set():
            try:
                sent = self.relay_once()
                backoff = idle
            except (BusUnavailable, OperationalError, DBAPIError) as exc:
                log.warning("outbox relay for %s waiting for the bus: %s", self._source, exc)
                sent, backoff = 0, min(backoff * 2 if backoff > idle else 0.2, 5.0)
                stop.wait(backoff)
                continue
            if sent == 0:
                if wakeup is not None:
                    wakeup(idle)
                else:
                    stop.wait(idle)
        self.close()


class ConsumerLoop:
    """Handles each record, commits its offset only after the handler's own commit.

    Transient failure: retried with backoff, then rewound so the offset does not advance.
    A batch stops after `batch_seconds` (the rest is rewound) so that the consumer polls well within
    the group's max poll interval.
    Anything else: the record goes to `<topic>.dlq` with the error, and the stream goes on.
    A consumer that fails `recreate_after` times in a row (coordinator gone, stuck rebalance) is closed
    without committing and replaced: the new member resumes from the committed offsets.
    """

    def __init__(
        self,
        bus: Bus,
        group_id: str,
        handlers: dict[str, Handler],
        *,
        max_attempts: int = 5,
        backoff_seconds: float = 0.05,
        recreate_after: int = 5,
        batch_seconds: float = 10.0,
    ) -> None:
        self._bus = bus
        self._recreate_after = recreate_after
        self._batch_seconds = batch_seconds
        self.group_id = group_id
        self._handlers = handlers
        self._max_attempts = max_attempts
        self._backoff = backoff_seconds
        self._consumer: Consumer | None = None
        self._dlq: Producer | None = None

    @property
    def consumer(self) -> Consumer:
        if self._consumer is None:
            self._consumer = self._bus.consumer(self.group_id, list(self._handlers))
        return self._consumer

    def run_once(self, timeout: float = 0.5, max_records: int = 100) -> int:
        """Process one poll; returns how many records were committed."""
        records = self.consumer.poll(max_records=max_records, timeout=timeout)
        started = time.monotonic()
        for index, record in enumerate(records):
            if index and time.monotonic() - started > self._batch_seconds:
                # A slow batch (loaded machine, slow database) must not outlast max_poll_interval: the
                # member would be dropped from its group mid-batch. Poll again; the rest comes back.
                self._rewind(records[index:])
                return index
            try:
                self._process(record)
            except TRANSIENT as exc:
                log.warning("%s: will retry %s@%s: %s", self.group_id, record.topic, record.offset, exc)
                HANDLED.labels(self.group_id, "retry").inc()
                self._rewind(records[index:])
                if isinstance(exc, BusUnavailable):
                    raise
                return index
        return len(records)

    def _process(self, record: Record) -> None:
        try:
            self._handle_with_retries(record)
        except TRANSIENT:
            raise
        except Exception as exc:  # noqa: BLE001 - anything not transient is a poison message
            log.error("%s: poison message at %s@%s: %s", self.group_id, record.topic, record.offset, exc)
            self._dead_letter(record, exc)
            HANDLED.labels(self.group_id, "dead-letter").inc()
        else:
            HANDLED.labels(self.group_id, "ok").inc()
        self.consumer.commit(record)

    def _rewind(self, unprocessed: list[Record]) -> None:
        """Every partition goes back to its first unprocessed record, so nothing fetched is skipped."""
        first: dict[tuple[str, int], Record] = {}
        for record in unprocessed:
            first.setdefault((record.topic, record.partition), record)
        for record in first.values():
            self.consumer.rewind(record)

    def _handle_with_retries(self, record: Record) -> None:
        envelope = record.envelope()
        handler = self._handlers[record.topic]
        retrying = Retrying(
            retry=retry_if_exception_type(TRANSIENT),
            stop=stop_after_attempt(self._max_attempts),
            wait=wait_exponential(multiplier=self._backoff, max=2.0),
            reraise=True,
        )
        for attempt in retrying:
            with attempt:
                handler(envelope)

    def _dead_letter(self, record: Record, error: Exception) -> None:
        if self._dlq is None:
            self._dlq = self._bus.producer()
        body = {
            "topic": record.topic,
            "partition": record.partition,
            "offset": record.offset,
            "key": record.key,
            "value_b64": base64.b64encode(record.value).decode(),
            "error": f"{type(error).__name__}: {error}",
            "poison": isinstance(error, PoisonMessage),
            "consumer": self.group_id,
            "failed_at": instant(utcnow()),
        }
        self._dlq.send(dlq_topic(record.topic), record.key or "", json.dumps(body).encode())
        self._dlq.flush()

    def run(self, stop: threading.Event, timeout: float = 0.5) -> None:
        backoff, failures = self._backoff, 0
        try:
            while not stop.is_set():
                try:
                    self.run_once(timeout=timeout)
                    backoff, failures = self._backoff, 0
                except BusUnavailable as exc:
                    failures += 1
                    log.warning("%s: bus unavailable (%d in a row): %s", self.group_id, failures, exc)
                    if failures >= self._recreate_after:
                        log.warning("%s: replacing the consumer after %d failures", self.group_id, failures)
                        self._reset_consumer()
                        failures = 0
                    if isinstance(exc, Rebalancing):
                        stop.wait(self._backoff)  # rejoining happens in the next poll: no growing back-off
                        continue
                    backoff = min(backoff * 2, 5.0)
                    stop.wait(backoff)
        except BaseException:
            # Whatever killed the loop, its restart gets a fresh consumer from the committed offsets.
            self._reset_consumer()
            raise
        self.close()

    def _reset_consumer(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            try:
                consumer.close()
            except Exception:
                log.debug("closing a broken consumer failed", exc_info=True)

    def close(self) -> None:
        self._reset_consumer()
        if self._dlq is not None:
            try:
                self._dlq.close()
            except Exception:
                log.debug("closing a bus client failed", exc_info=True)
        self._dlq = None


class SupervisedWorker:
    """Runs `target(stop)` in a thread; if it dies (or returns before stop), restarts it with backoff.

    While it waits to restart it is not `healthy`, which `/readyz` reports. A run that lasted longer than
    `stable_seconds` resets the backoff: an occasional crash is retried quickly, a crash loop slowly.
    """

    def __init__(
        self,
        name: str,
        target: Callable[[threading.Event], object],
        stop: threading.Event,
        *,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        stable_seconds: float = 60.0,
    ) -> None:
        self.name = name
        self._target = target
        self._stop = stop
        self._initial = backoff_initial
        self._max = backoff_max
        self._stable = stable_seconds
        self.restarts = 0
        self._running = False
        self._thread: threading.Thread | None = None

    @property
    def healthy(self) -> bool:
        """False only while it waits to be restarted (not before it starts, not after shutdown)."""
        return self._thread is None or self._running or self._stop.is_set()

    def start(self) -> None:
        self._running = True
        WORKER_UP.labels(self.name).set(1)
        self._thread = threading.Thread(target=self._supervise, name=self.name, daemon=True)
        self._thread.start()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _supervise(self) -> None:
        delay = self._initial
        while not self._stop.is_set():
            self._running = True
            WORKER_UP.labels(self.name).set(1)
            started = time.monotonic()
            try:
                self._target(self._stop)
                if self._stop.is_set():
                    break
                log.error("worker %s returned before shutdown; restarting it", self.name)
            except Exception as exc:  # noqa: BLE001 - whatever killed it, the supervisor restarts it
                # The message may quote data being processed: log the type and the frames only.
                frames = "".join(traceback.format_tb(exc.__traceback__))
                log.error("worker %s died on %s; restarting it\n%s", self.name, type(exc).__name__, frames)
            self._running = False
            WORKER_UP.labels(self.name).set(0)
            WORKER_RESTARTS.labels(self.name).inc()
            self.restarts += 1
            if time.monotonic() - started > self._stable:
                delay = self._initial
            self._stop.wait(delay)
            delay = min(delay * 2, self._max)
        self._running = False
