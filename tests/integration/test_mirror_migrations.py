"""Databases made before the kernel's mirror package move to its one schema with their rows kept."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, inspect, text
from sqlmodel import SQLModel

from services.discharge.adapters.orm import MIRRORS as DISCHARGE_MIRRORS
from services.snp.adapters.orm import MIRRORS as SNP_MIRRORS
from shared.db import migrate
from shared.db.engine import make_engine
from shared.mirrors import MirrorTables

NOW = datetime(2026, 12, 1, 8, tzinfo=UTC)
CARETEAM_ID = "3f1d1e0a-6c4b-4b7e-9a57-6d1c1f0b7a10"
# The head of each history before the shared schema, and that migration's tables.
BEFORE = {"discharge": ("d4e1a0c7b003", DISCHARGE_MIRRORS), "snp": ("5a7e3c9d2b61", SNP_MIRRORS)}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'service.sqlite'}"
    return str(request.getfixturevalue("postgres_url"))


def _columns(engine: Engine, table: str) -> dict[str, int | None]:
    return {c["name"]: getattr(c["type"], "length", None) for c in inspect(engine).get_columns(table)}


def _old_rows(engine: Engine, service: str, tables: MirrorTables) -> None:
    careteam, territory = tables.careteam.__tablename__, tables.territory.__tablename__
    time_column = ", source_time" if service == "snp" else ""
    with engine.begin() as connection:
        connection.execute(
            text(
                f"INSERT INTO {careteam} (patient_key, careteam_id, team_org_id, status, consent_opposed,"
                " dac_case_open, source_time, updated_at) VALUES ('pk-1', :ct, 'msp-1', 'active', false, false,"
                " '2026-11-30T08:00:00+00:00', :now)"
            ),
            {"ct": CARETEAM_ID, "now": NOW},
        )
        connection.execute(
            text(
                f"INSERT INTO {territory} (postal_code, cpts_org_id, dac_org_id{time_column}, updated_at)"
                f" VALUES ('88100', 'cpts-1', NULL{', :at' if time_column else ''}, :now)"
            ),
            {"now": NOW, "at": "2026-11-30T08:00:00+00:00"},
        )


@pytest.mark.parametrize("service", sorted(BEFORE))
def test_the_mirror_tables_move_to_the_shared_schema_and_keep_their_rows(database_url, service):
    revision, tables = BEFORE[service]
    engine = make_engine(database_url)
    try:
        migrate.upgrade(service, engine, revision=revision)
        _old_rows(engine, service, tables)
        migrate.upgrade(service, engine)
        careteam, territory = tables.careteam.__tablename__, tables.territory.__tablename__
        for name in (careteam, territory):
            wanted = {c.name: getattr(c.type, "length", None) for c in SQLModel.metadata.tables[name].columns}
            assert _columns(engine, name) == wanted
        assert _columns(engine, careteam)["careteam_id"] == 64
        assert f"ix_{territory}_cpts_org_id" in {i["name"] for i in inspect(engine).get_indexes(territory)}
        with engine.connect() as connection:
            kept = connection.execute(
                text(f"SELECT careteam_id, team_org_id, source_time, source_sent_at FROM {careteam}")
            ).one()
            pool = connection.execute(text(f"SELECT postal_code, cpts_org_id FROM {territory}")).one()
        # discharge kept the envelope's time as its snapshot time: it becomes the tie-breaker it is now.
        times = (None, "2026-11-30T08:00:00+00:00") if service == "discharge" else ("2026-11-30T08:00:00+00:00", None)
        assert tuple(kept) == (CARETEAM_ID, "msp-1", *times)
        assert tuple(pool) == ("88100", "cpts-1")
    finally:
        engine.dispose()
