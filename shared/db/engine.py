"""Engines for the service databases: SQLite (embedded default) and PostgreSQL (one schema per service)."""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, MetaData, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session

log = logging.getLogger(__name__)


def make_engine(url: str, schema: str | None = None, *, pool_size: int = 10) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(url)
    if parsed.drivername == "postgresql":
        url = str(parsed.set(drivername="postgresql+psycopg"))
    # A database that vanishes without a reset (a dropped route, a paused VM) must surface as an error, never as a
    # worker blocked for ever on a socket: bounded connect, TCP keepalives, and unacknowledged writes time out.
    connect_args: dict[str, Any] = {
        "connect_timeout": 10,
        "keepalives": 1,
        "keepalives_idle": 30,
        "keepalives_interval": 10,
        "keepalives_count": 3,
        "tcp_user_timeout": 60_000,
    }
    if schema:
        connect_args["options"] = f"-csearch_path={schema}"
    # hide_parameters: a failing statement's error text must never quote a NIR or a birth date.
    engine = create_engine(
        url,
        pool_pre_ping=True,
        pool_size=pool_size,
        max_overflow=pool_size,
        connect_args=connect_args,
        hide_parameters=True,
    )
    if schema:
        with engine.begin() as connection:
            # Concurrent CREATE SCHEMA IF NOT EXISTS can still collide on the catalogue: serialise it.
            connection.execute(text("SELECT pg_advisory_xact_lock(hashtext('relais.create_tables'))"))
            connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    return engine


SQLITE_BUSY_SECONDS = 30.0
_file_locks: dict[str, threading.Lock] = {}
_file_locks_guard = threading.Lock()


def _file_lock(database: str | None) -> threading.Lock | None:
    """One lock per SQLite file in this process, shared by every engine on it (None for in-memory)."""
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    key = str(Path(database).resolve())
    with _file_locks_guard:
        return _file_locks.setdefault(key, threading.Lock())


class _SerialisedConnection(sqlite3.Connection):
    """A pysqlite connection that gives back the process's write lock of its file when its transaction ends.

    SQLite lets one writer in at a time; the others poll with growing sleeps (1, 2, 5, 10... ms), which
    under concurrent requests costs more than the transactions themselves. Queueing on a lock in the process
    lets the next transaction in as soon as the last one ends; SQLite's own busy timeout still guards
    against other processes.
    """

    relais_lock: threading.Lock | None = None
    relais_locked: bool = False

    def relais_acquire(self) -> None:
        if self.relais_lock is not None and not self.relais_locked:
            # Past the busy timeout, go on without it: SQLite's own busy handling decides, as before.
            self.relais_locked = self.relais_lock.acquire(timeout=SQLITE_BUSY_SECONDS)

    def relais_release(self) -> None:
        if self.relais_locked:
            self.relais_locked = False
            self.relais_lock.release()  # type: ignore[union-attr]

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self.relais_release()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self.relais_release()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.relais_release()


def _sqlite_engine(url: str) -> Engine:
    database = make_url(url).database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    lock = _file_lock(database)
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_SECONDS, "factory": _SerialisedConnection},
        hide_parameters=True,
    )

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection, _record):
        # Let SQLAlchemy, not pysqlite, decide when transactions begin (see the "begin" hook).
        dbapi_connection.isolation_level = None
        dbapi_connection.relais_lock = lock
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection):
        # Take the write lock up front: a deferred reader upgrading to writer fails at once with SQLITE_BUSY.
        dbapi_connection = connection.connection.dbapi_connection
        dbapi_connection.relais_acquire()
        try:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            dbapi_connection.relais_release()
            raise

    return engine


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, class_=Session, expire_on_commit=False)


def is_postgres(engine: Engine | Connection) -> bool:
    return engine.dialect.name == "postgresql"


def create_tables(engine: Engine, metadata: MetaData) -> None:
    """`metadata.create_all`, serialised on PostgreSQL: replicas starting together share the auth schema,
    and two concurrent CREATE TABLE of the same name fail on the catalogue's unique index."""
    with engine.begin() as connection:
        if is_postgres(connection):
            connection.execute(text("SELECT pg_advisory_xact_lock(hashtext('relais.create_tables'))"))
        metadata.create_all(connection)


def commits_are_durable(engine: Engine) -> bool:
    """False when PostgreSQL acknowledges a commit before writing it (`synchronous_commit = off`): a crash of
    the database would then lose messages Relais has already answered 200 to (and offsets it has committed)."""
    if not is_postgres(engine):
        return True
    with engine.connect() as connection:
        setting = connection.execute(text("SHOW synchronous_commit")).scalar_one()
    if setting == "off":
        log.warning(
            "PostgreSQL synchronous_commit is off: a database crash can lose messages already acknowledged; "
            "set it to on (the PostgreSQL default)"
        )
        return False
    return True
