"""What a service process runs besides HTTP: its database, the bus, the outbox relay and its consumers."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session

from shared.audit import RefusalRecorder, refusal_recorder
from shared.auth import Directory
from shared.bus.base import Bus
from shared.bus.factory import bus_from_settings
from shared.bus.worker import ConsumerLoop, Handler, OutboxRelay, SupervisedWorker
from shared.db import migrate
from shared.db.engine import commits_are_durable, make_engine, session_factory
from shared.db.uow import UnitOfWork, Wakeup
from shared.logs import install_log_policy
from shared.settings import ServiceSettings

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    name: str
    settings: ServiceSettings
    engine: Engine
    sessions: sessionmaker[Session]
    bus: Bus
    directory: Directory
    wakeup: Wakeup = field(default_factory=Wakeup)
    consumers: list[ConsumerLoop] = field(default_factory=list)
    run_workers: bool = True
    extra_workers: list[Callable[[threading.Event], None]] = field(default_factory=list)
    # A worker that runs but keeps failing (its own probe) is as unready as a dead one.
    worker_probes: list[Callable[[], bool]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[SupervisedWorker] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.relay = OutboxRelay(
            self.sessions, self.bus, self.name, self.settings.relay_batch_size, self.settings.bus_max_message_bytes
        )
        # Refusals are audited in their own transaction (shared/audit.py), whichever route refused.
        self.record_refusal: RefusalRecorder = refusal_recorder(self.unit_of_work)

    def unit_of_work(self, cls: type[UnitOfWork] = UnitOfWork) -> UnitOfWork:
        return cls(
            self.sessions,
            self.name,
            on_outbox_commit=self.wakeup.set,
            max_message_bytes=self.settings.bus_max_message_bytes,
        )

    def add_consumer(self, handlers: dict[str, Handler], group_suffix: str = "") -> ConsumerLoop:
        group = f"{self.settings.consumer_group_prefix}.{self.name}{group_suffix}"
        loop = ConsumerLoop(self.bus, group, handlers, max_attempts=self.settings.consumer_max_attempts)
        self.consumers.append(loop)
        return loop

    def database_ready(self) -> bool:
        with self.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        return True

    def start(self) -> None:
        """Start the relay and consumers in background threads (the HTTP app's lifespan calls this)."""
        if not self.run_workers or self._threads:
            return
        self._stop.clear()
        topics = [topic for loop in self.consumers for topic in loop._handlers]
        try:
            self.bus.ensure_topics(topics)
        except Exception as exc:  # noqa: BLE001 - the consumer loops retry; the service still starts
            log.warning("%s: could not create topics yet: %s", self.name, exc)
        idle = self.settings.relay_idle_seconds
        self._spawn("relay", lambda stop: self.relay.run(stop, self.wakeup.wait, idle))
        for loop in self.consumers:
            self._spawn(loop.group_id, loop.run)
        for index, worker in enumerate(self.extra_workers):
            self._spawn(f"worker-{index}", worker)

    def _spawn(self, name: str, target: Callable[[threading.Event], Any]) -> None:
        worker = SupervisedWorker(
            f"{self.name}-{name}", target, self._stop, backoff_max=self.settings.worker_restart_max_seconds
        )
        worker.start()
        self._threads.append(worker)

    def workers_ready(self) -> bool:
        """Every background worker is running (a dead one waiting for its restart makes this False) and none
        says it keeps failing."""
        return all(worker.healthy for worker in self._threads) and all(probe() for probe in self.worker_probes)

    @property
    def workers(self) -> list[SupervisedWorker]:
        return list(self._threads)

    def stop(self) -> None:
        self._stop.set()
        self.wakeup.set()
        for thread in self._threads:
            thread.join(timeout=10)
        self._threads.clear()

    def close(self) -> None:
        self.stop()
        self.engine.dispose()


def build_runtime(
    name: str,
    settings: ServiceSettings,
    *,
    bus: Bus | None = None,
    directory: Directory | None = None,
    migrate_database: bool = True,
    run_workers: bool = True,
) -> Runtime:
    install_log_policy()  # before any worker or broker client can log
    engine = make_engine(settings.resolved_database_url, settings.database_schema)
    if migrate_database:
        migrate.upgrade(name, engine, settings.database_schema)
    commits_are_durable(engine)
    return Runtime(
        name=name,
        settings=settings,
        engine=engine,
        sessions=session_factory(engine),
        bus=bus or bus_from_settings(settings, client_id=f"relais-{name}"),
        directory=directory
        or Directory(
            settings.resolved_auth_url,
            settings.auth_database_schema,
            settings.token_cache_seconds,
            cache_size=settings.token_cache_size,
            miss_cache_seconds=settings.token_miss_cache_seconds,
        ),
        run_workers=run_workers,
    )
