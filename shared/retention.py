"""Retention: delete what has done its job, in small batches, on a schedule (docs/security.md, "Retention").

The kernel rules cover the kernel tables (sent outbox rows, inbox rows, dead letters, audit log); a service
adds its own (`PurgeRule` on its deliveries, notifications, fired timers...) and runs `RetentionWorker`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from prometheus_client import Counter
from sqlalchemy import ColumnElement, Engine, Table, and_, delete, select, tuple_
from sqlmodel import SQLModel

from shared.clock import utcnow
from shared.db.tables import AuditEntry, InboxMessage, OutboxDeadLetter, OutboxMessage

log = logging.getLogger(__name__)

PURGED = Counter("relais_retention_purged_total", "Rows deleted by the retention purge", ["source", "rule"])


@dataclass(frozen=True)
class PurgeRule:
    """Delete rows of `table` whose `column` is older than `days` (0 keeps them for ever), and `where`."""

    name: str
    table: Table
    column: str
    days: float
    where: Callable[[Table], ColumnElement[bool]] | None = field(default=None, compare=False)

    def condition(self, now: datetime) -> ColumnElement[bool]:
        column = self.table.c[self.column]
        older = column < now - timedelta(days=self.days)
        return and_(older, self.where(self.table)) if self.where is not None else older


def kernel_rules(settings: Any) -> list[PurgeRule]:
    """Kernel tables, with the settings' retention days (RELAIS_RETENTION_*_DAYS)."""
    return [
        # Only published rows: an unpublished one is still owed to the bus, however old.
        PurgeRule(
            "outbox", table_of(OutboxMessage), "published_at", settings.retention_outbox_days,
            lambda t: t.c.published_at.is_not(None),
        ),
        # Past the broker's retention a message can no longer be redelivered, so its inbox row is useless.
        PurgeRule("inbox", table_of(InboxMessage), "handled_at", settings.retention_inbox_days),
        PurgeRule("outbox_dead_letter", table_of(OutboxDeadLetter), "dead_at", settings.retention_dead_letter_days),
        PurgeRule("audit_log", table_of(AuditEntry), "at", settings.retention_audit_days),
    ]


def table_of(model: type[SQLModel]) -> Table:
    """The Table of a SQLModel class, typed (services use it for their own purge rules)."""
    return SQLModel.metadata.tables[str(model.__tablename__)]


def purge(
    engine: Engine,
    rules: Sequence[PurgeRule],
    *,
    now: datetime | None = None,
    batch_size: int = 1000,
    source: str = "relais",
    stop: threading.Event | None = None,
) -> dict[str, int]:
    """Apply each rule in batches of `batch_size` (short transactions, no long locks); rows deleted per rule."""
    now = now or utcnow()
    deleted: dict[str, int] = {}
    for rule in rules:
        deleted[rule.name] = 0
        if rule.days <= 0:
            continue
        keys = list(rule.table.primary_key.columns)
        while not (stop and stop.is_set()):
            with engine.begin() as connection:
                batch = connection.execute(
                    select(*keys).where(rule.condition(now)).limit(batch_size)
                ).all()
                if not batch:
                    break
                if len(keys) == 1:
                    condition = keys[0].in_([row[0] for row in batch])
                else:
                    condition = tuple_(*keys).in_([tuple(row) for row in batch])
                count = connection.execute(delete(rule.table).where(condition)).rowcount or 0
            deleted[rule.name] += count
            PURGED.labels(source, rule.name).inc(count)
            if len(batch) < batch_size:
                break
    return deleted


class RetentionWorker:
    """Runs `purge` every `interval` seconds (a `Runtime.extra_workers` target: `run(stop)`)."""

    def __init__(self, engine: Engine, rules: Sequence[PurgeRule], *, interval: float = 3600.0,
                 batch_size: int = 1000, source: str = "relais") -> None:
        self._engine = engine
        self._rules = list(rules)
        self._interval = interval
        self._batch_size = batch_size
        self._source = source

    @classmethod
    def for_settings(cls, engine: Engine, settings: Any, extra: Sequence[PurgeRule] = (),
                     source: str = "relais") -> RetentionWorker:
        return cls(engine, [*kernel_rules(settings), *extra], interval=settings.retention_interval_seconds,
                   batch_size=settings.retention_batch_size, source=source)

    def run_once(self, stop: threading.Event | None = None) -> dict[str, int]:
        deleted = purge(self._engine, self._rules, batch_size=self._batch_size, source=self._source, stop=stop)
        if any(deleted.values()):
            log.info("retention %s: deleted %s", self._source, {k: v for k, v in deleted.items() if v})
        return deleted

    def run(self, stop: threading.Event) -> None:
        # A first purge a minute after start (not during start-up), then on the interval.
        delay = min(self._interval, 60.0)
        while not stop.wait(delay):
            self.run_once(stop)
            delay = self._interval
