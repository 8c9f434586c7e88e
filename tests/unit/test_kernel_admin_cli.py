"""`relais purge` and `relais outbox dead-letters` on fresh SQLite databases."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import insert
from typer.testing import CliRunner

from relais.cli import app
from shared.db.engine import make_engine
from shared.db.tables import OutboxDeadLetter


def test_purge_and_dead_letter_listing(tmp_path, monkeypatch):
    monkeypatch.setenv("RELAIS_DATA_DIR", str(tmp_path))
    runner = CliRunner()
    assert runner.invoke(app, ["db", "upgrade", "snp"]).exit_code == 0
    engine = make_engine(f"sqlite:///{tmp_path / 'snp.sqlite'}")
    now = datetime.now(UTC)
    with engine.begin() as connection:
        connection.execute(insert(OutboxDeadLetter.__table__).values(  # type: ignore[attr-defined]
            outbox_seq=7, message_id="m-7", topic="t", key="k", event_type="SlotBooked", value="{}",
            size=2, reason="too_large", created_at=now, dead_at=now))
    engine.dispose()
    listed = runner.invoke(app, ["outbox", "dead-letters", "snp"])
    assert listed.exit_code == 0, listed.output
    assert "m-7" in listed.output and "too_large" in listed.output
    purged = runner.invoke(app, ["purge", "snp"])
    assert purged.exit_code == 0, purged.output
    assert "outbox_dead_letter 0" in purged.output
