"""Retention: what has done its job is purged in batches; what is still owed or recent stays."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlmodel import SQLModel

from shared.db.engine import make_engine, session_factory
from shared.db.tables import KERNEL_TABLES, AuditEntry, InboxMessage, OutboxMessage
from shared.retention import PurgeRule, RetentionWorker, kernel_rules, purge
from shared.settings import RelaisSettings

NOW = datetime.now(UTC)


def setup(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'svc.sqlite'}")
    SQLModel.metadata.create_all(engine, tables=list(KERNEL_TABLES))
    sessions = session_factory(engine)
    old, recent = NOW - timedelta(days=400), NOW - timedelta(hours=1)
    with sessions() as session:
        for i in range(25):
            session.add(OutboxMessage(message_id=f"sent-{i}", topic="t", key="k", event_type="E", value="{}",
                                      created_at=old, published_at=old))
        session.add(OutboxMessage(message_id="owed", topic="t", key="k", event_type="E", value="{}",
                                  created_at=old, published_at=None))
        session.add(OutboxMessage(message_id="fresh", topic="t", key="k", event_type="E", value="{}",
                                  created_at=recent, published_at=recent))
        for i in range(30):
            session.add(InboxMessage(consumer=f"c{i % 3}", message_id=f"m{i}", handled_at=old))
        session.add(InboxMessage(consumer="c0", message_id="new", handled_at=recent))
        session.add(AuditEntry(at=old, action="read", outcome="allowed"))
        session.commit()
    return engine, sessions


def count(sessions, model) -> int:
    with sessions() as session:
        return session.execute(select(func.count()).select_from(model)).scalar_one()


def test_purge_deletes_sent_and_old_rows_in_batches_and_keeps_owed_recent_and_audit(tmp_path):
    engine, sessions = setup(tmp_path)
    deleted = purge(engine, kernel_rules(RelaisSettings(_env_file=None)), now=NOW, batch_size=7)
    assert deleted["outbox"] == 25 and deleted["inbox"] == 30 and deleted["audit_log"] == 0
    with sessions() as session:
        assert sorted(session.execute(select(OutboxMessage.message_id)).scalars()) == ["fresh", "owed"]
    assert count(sessions, InboxMessage) == 1
    assert count(sessions, AuditEntry) == 1  # 400 days is within the audit's 5 years
    engine.dispose()


def test_zero_days_keeps_for_ever_and_service_rules_apply(tmp_path):
    engine, sessions = setup(tmp_path)
    settings = RelaisSettings(_env_file=None, retention_outbox_days=0, retention_audit_days=30)
    only_c1 = PurgeRule("inbox-c1", InboxMessage.__table__, "handled_at", 1,  # type: ignore[attr-defined]
                        lambda t: t.c.consumer == "c1")
    deleted = purge(engine, [*kernel_rules(settings)[:1], only_c1, kernel_rules(settings)[3]], now=NOW)
    assert deleted == {"outbox": 0, "inbox-c1": 10, "audit_log": 1}
    assert count(sessions, OutboxMessage) == 27
    engine.dispose()


def test_the_worker_purges_in_the_background_and_stops(tmp_path):
    engine, _sessions = setup(tmp_path)
    worker = RetentionWorker.for_settings(engine, RelaisSettings(_env_file=None))
    assert worker.run_once()["outbox"] == 25
    stop = threading.Event()
    stop.set()
    worker.run(stop)  # returns at once when asked to stop
    engine.dispose()
