"""Issue 19 item 4: the SNP dashboard never isolates fewer requests than the small-cell threshold.

Periods are whole Paris days that are over; totals are suppressed like cells; a hidden cell keeps no label
(no commune, no hour); and no two allowed periods, overlapping or nested, difference to a group smaller than
the threshold. Over HTTP on SQLite and PostgreSQL (the day of a stored time depends on the store giving it
back in UTC), and the rule itself on every pair of periods of a seeded random month."""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from services.snp.bootstrap import bootstrap as snp_bootstrap
from services.snp.dashboard import Fact, dashboard
from services.snp.entrypoints.consumers import on_careteam_message
from shared.auth import Directory
from shared.identifiers import make_nir
from shared.settings import SnpSettings
from tests.unit.test_snp_service import Clock, bearer, service_request, territory_changed

pytestmark = pytest.mark.attack

THRESHOLD = 5
D1 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)  # 10:00 in Paris
CONTREX, VITTEL = "88114", "88516"  # postal codes 88140 and 88800, both in cpts-ouest's territory


@pytest.fixture(params=["sqlite", "postgres"])
def database(request) -> str | None:
    return None if request.param == "sqlite" else request.getfixturevalue("postgres_url")


@contextmanager
def _snp(database: str | None, tmp_path) -> Iterator[tuple[TestClient, Clock, dict[str, str]]]:
    schema = {"database_url": database, "database_schema": "snp"} if database else {}
    clock = Clock(D1)
    directory = Directory(f"sqlite:///{tmp_path / 'auth.sqlite'}")
    service = snp_bootstrap(SnpSettings(environment="test", data_dir=tmp_path, **schema), directory=directory,
                            run_workers=False, clock=clock)
    tokens = {"sas": directory.add("sas", "sas-88", "SAS 88"), "cpts": directory.add("cpts", "cpts-ouest", "CPTS")}
    for postal in ("88140", "88800"):
        on_careteam_message(service.app.state.bus, territory_changed(postal, "cpts-ouest"))
    try:
        with TestClient(service.app) as client:
            yield client, clock, tokens
    finally:
        service.runtime.close()
        directory.close()


def _seed(client: TestClient, clock: Clock, token: str) -> None:
    """Day 1: six requests from Contrexéville; day 2: one from Vittel at 10:00 Paris; day 3: six from Contrexéville."""
    plan = [(0, CONTREX)] * 6 + [(1, VITTEL)] + [(2, CONTREX)] * 6
    for index, (day, commune) in enumerate(plan):
        clock.now = D1 + timedelta(days=day, seconds=index)
        body = service_request(f"req-{index}", commune, nir=make_nir(1, 50 + index, 3, "88", 516, index + 1))
        assert client.post("/snp/fhir/ServiceRequest", json=body, headers=bearer(token)).status_code == 201
    clock.now = D1 + timedelta(days=3)


def _board(client: TestClient, token: str, first: str, last: str) -> dict[str, Any]:
    response = client.get(f"/snp/dashboard?from={first}&to={last}", headers=bearer(token))
    assert response.status_code == 200, response.text
    return response.json()


def test_a_window_of_seconds_is_refused_and_the_day_in_progress_is_never_shown(database, tmp_path):
    with _snp(database, tmp_path) as (client, clock, tokens):
        _seed(client, clock, tokens["sas"])
        cpts = bearer(tokens["cpts"])
        seconds = client.get("/snp/dashboard?from=2026-11-24T09:59:59%2B01:00&to=2026-11-24T10:00:01%2B01:00",
                             headers=cpts)
        assert seconds.status_code == 400 and seconds.json()["resourceType"] == "OperationOutcome"
        today = client.get("/snp/dashboard?from=2026-11-26&to=2026-11-26", headers=cpts)
        assert today.status_code == 422
        assert _board(client, tokens["cpts"], "2026-11-20", "2026-11-30")["to"] == "2026-11-25"


def test_a_day_with_one_request_shows_no_count_no_commune_no_hour(database, tmp_path):
    with _snp(database, tmp_path) as (client, clock, tokens):
        _seed(client, clock, tokens["sas"])
        board = _board(client, tokens["cpts"], "2026-11-24", "2026-11-24")
        assert board["requests"] is None and board["placed"] is None and board["suppressed"] is True
        for breakdown in ("by_urgency", "by_commune", "by_hour"):
            (row,) = board[breakdown]
            assert row["suppressed"] is True and row["requests"] is None
        assert board["by_commune"][0]["key"] is None and board["by_commune"][0]["name"] is None
        assert board["by_hour"][0]["hour"] is None
        assert VITTEL not in str(board) and "Vittel" not in str(board)


def test_overlapping_periods_never_difference_to_fewer_than_the_threshold(database, tmp_path):
    with _snp(database, tmp_path) as (client, clock, tokens):
        _seed(client, clock, tokens["sas"])
        days = ["2026-11-23", "2026-11-24", "2026-11-25"]
        boards = {(a, b): _board(client, tokens["cpts"], a, b) for a in days for b in days if a <= b}
    for (first, last), board in boards.items():
        if first <= "2026-11-24" <= last:  # the period holds the day of one request
            assert board["requests"] is None and VITTEL not in str(board)
    for (outer, inner) in ((o, i) for o in boards for i in boards if o[0] <= i[0] and i[1] <= o[1] and o != i):
        for name, value in _counts(boards[outer]).items():
            if name in ("placed", "unplaced"):
                continue
            smaller = _counts(boards[inner]).get(name)
            if value is not None and smaller is not None:
                assert value - smaller == 0 or value - smaller >= THRESHOLD, (outer, inner, name)


def _counts(board: dict[str, Any]) -> dict[str, int | None]:
    """Every published count of a board, by a stable name."""
    counts: dict[str, int | None] = {name: board[name] for name in ("requests", "placed", "unplaced")}
    for breakdown, label in (("by_urgency", "key"), ("by_commune", "key"), ("by_hour", "hour")):
        for row in board[breakdown]:
            if not row.get("suppressed"):
                counts[f"{breakdown}:{row[label]}"] = row["requests"]
    return counts


# --- the rule, on every pair of periods of a seeded random month ---------------------------------------------


def _month(seed: int) -> list[Fact]:
    rng = random.Random(seed)
    facts = []
    for day in range(30):
        for _ in range(rng.choice([0, 0, 1, 2, 4, 5, 6, 9, 14])):
            at = datetime(2026, 11, 1, tzinfo=UTC) + timedelta(days=day, hours=rng.choice([6, 7, 8, 12, 16]))
            placed = rng.random() < 0.7
            facts.append(Fact(
                urgency=rng.choice(["2h", "same-day", "48h"]), commune=rng.choice([CONTREX, VITTEL, "88321", "88304"]),
                requested_at=at, deadline_at=at + timedelta(hours=48), state="placed" if placed else "waiting",
                appointment_start=at + timedelta(hours=3) if placed else None,
                effecteur_org_id=rng.choice(["gp-a", "gp-b"]) if placed else None,
            ))
    return facts


def _period(facts: list[Fact], first: date, last: date) -> dict[str, Any]:
    return dashboard([f for f in facts if first <= f.day <= last], small_cell_threshold=THRESHOLD)


@pytest.mark.parametrize("seed", [19, 2026])
def test_every_published_number_is_a_sum_of_one_day_numbers_none_below_the_threshold(seed):
    facts = _month(seed)
    days = sorted({f.day for f in facts} | {date(2026, 11, 1) + timedelta(days=n) for n in range(30)})
    single = {day: _counts(_period(facts, day, day)) for day in days}
    for counts in single.values():
        # Groups of requests (placed and unplaced are measures of a shown group, not groups of their own).
        groups = [value for name, value in counts.items() if name not in ("placed", "unplaced")]
        assert all(value is None or value == 0 or value >= THRESHOLD for value in groups)
    checked = 0
    for i, first in enumerate(days):
        for last in days[i:]:
            board = _period(facts, first, last)
            for name, value in _counts(board).items():
                if value is None:
                    continue
                # What a period shows is what its days show, summed: differencing learns nothing finer.
                parts = [single[day].get(name, 0) for day in days if first <= day <= last]
                assert None not in parts and value == sum(parts), (first, last, name)
                checked += 1
            if board["requests"] is not None:
                for breakdown in ("by_urgency", "by_commune", "by_hour"):
                    shown = sum(row["requests"] for row in board[breakdown] if not row.get("suppressed"))
                    assert board["requests"] - shown == 0 or board["requests"] - shown >= THRESHOLD
    assert checked > 100  # the rule was exercised, not vacuously true
