"""Placement time against the number of free SNP slots (1,000, 10,000, 100,000).

    .venv/bin/python benchmarks/snp_placement.py                      # SQLite in a temporary directory
    .venv/bin/python benchmarks/snp_placement.py --database-url postgresql://...  # empty database

Slots are bulk-inserted straight into the snp tables (the schema comes from the service's migrations);
each measured placement is the real handler: own-team lookup, the indexed earliest-slot query with
LIMIT, the ranking, the conditional claim, the outbox writes and the commit.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import insert, text
from sqlmodel import SQLModel

from relais.demo import load_territory
from services.snp.adapters.orm import SlotRow, TerritoryMirrorRow
from services.snp.commands import RequestSnp
from services.snp.deps import Deps
from services.snp.domain import Urgency, communes
from services.snp.messagebus import MessageBus
from services.snp.uow import SnpUnitOfWork
from shared.audit import refusal_recorder
from shared.db import migrate
from shared.db.engine import make_engine, session_factory
from shared.db.uow import UnitOfWork
from shared.identifiers import INS_NIR, make_nir, patient_key
from shared.settings import SnpSettings

SIZES = (1_000, 10_000, 100_000)
START = datetime(2030, 1, 7, 7, 0, tzinfo=UTC)
CPTS = "cpts-bench"


def fill(engine, count: int) -> None:
    table = communes()
    territory = [table[insee] for insee in load_territory("benchmark").territory_communes]
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM snp_slot"))
        # The territory is the CPTS covering the communes' postal codes (territory mirror).
        connection.execute(text("DELETE FROM snp_territory"))
        connection.execute(
            insert(SQLModel.metadata.tables[str(TerritoryMirrorRow.__tablename__)]),
            [
                {"postal_code": code, "cpts_org_id": CPTS, "dac_org_id": None, "updated_at": START}
                for code in sorted({c.postal_code for c in territory})
            ],
        )
        rows = []
        for index in range(count):
            commune = territory[index % len(territory)]
            # Slots spread over 48 hours so most of them are within a 48 h deadline.
            start = START + timedelta(minutes=5 + (index * 2880) // count)
            rows.append(
                {
                    "id": str(uuid.uuid4()),
                    "schedule_id": "bench",
                    "org_id": f"effecteur-{index % 200}",
                    "client_id": f"s{index}",
                    "commune": commune.insee,
                    "territory": CPTS,
                    "status": "free",
                    "start": start,
                    "end": start + timedelta(minutes=20),
                    "updated_at": START,
                }
            )
            if len(rows) == 10_000:
                connection.execute(insert(SlotRow.__table__), rows)
                rows = []
        if rows:
            connection.execute(insert(SlotRow.__table__), rows)
        if engine.dialect.name == "postgresql":
            connection.execute(text("ANALYZE snp_slot"))


def measure(engine, count: int, placements: int) -> list[float]:
    sessions = session_factory(engine)

    def uow() -> SnpUnitOfWork:
        return SnpUnitOfWork(sessions, "snp")

    deps = Deps(
        clock=lambda: START,
        pseudonymise=lambda system, value: patient_key(system, value, "benchmark-secret"),
        settings=SnpSettings(),
        record_refusal=refusal_recorder(uow),
    )
    bus = MessageBus(uow, deps)

    timings = []
    for index in range(placements):
        command = RequestSnp(
            "sas-bench",
            f"{count}-{index}-{uuid.uuid4().hex[:6]}",
            INS_NIR,
            make_nir(1, 80, 1, "88", 516, index % 999 + 1),
            "88114",
            Urgency.WITHIN_48H,
            "fever",
        )
        started = time.perf_counter()
        view = bus.handle(command)
        timings.append((time.perf_counter() - started) * 1000)
        assert view.appointment is not None, "every benchmark request should be placed"
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="an empty database (default: SQLite in a temporary directory)")
    parser.add_argument("--placements", type=int, default=50, help="placements measured per size")
    args = parser.parse_args()
    url = args.database_url or f"sqlite:///{Path(tempfile.mkdtemp(prefix='snp-bench-')) / 'snp.sqlite'}"
    engine = make_engine(url)
    migrate.upgrade("snp", engine)
    assert UnitOfWork  # the kernel UoW is what SnpUnitOfWork extends
    print(f"database: {engine.dialect.name}; {args.placements} placements per size (milliseconds)")
    print(f"{'free slots':>12} {'median':>8} {'p90':>8} {'max':>8}")
    for size in SIZES:
        fill(engine, size)
        measure(engine, size, 3)  # warm caches and plans
        timings = sorted(measure(engine, size, args.placements))
        p90 = timings[int(0.9 * (len(timings) - 1))]
        print(f"{size:>12,} {statistics.median(timings):>8.2f} {p90:>8.2f} {timings[-1]:>8.2f}")
    engine.dispose()


if __name__ == "__main__":
    main()
