"""`make attack` (`pytest -m attack`): the count of attacks held / tried, per store, at the end of the run.

An attack is held when its test passes (every phase); tried when it ran (a skipped test is not tried, and the
project has none). A test runs on PostgreSQL when its parameters or fixtures name it; every other one runs on
SQLite or needs no store at all (rate limits, outbound policy, the request guard).
"""

from __future__ import annotations

import pytest

POSTGRESQL, SQLITE = "PostgreSQL", "SQLite or no store"


def replaying_attacks(config: pytest.Config) -> bool:
    expression = config.getoption("markexpr", "") or ""
    return "attack" in expression and "not attack" not in expression


def store_of(item: pytest.Item) -> str:
    callspec = getattr(item, "callspec", None)
    params = callspec.params.values() if callspec is not None else ()
    uses_postgres = any(value == "postgres" for value in params if isinstance(value, str))
    if uses_postgres or item.get_closest_marker("postgres") is not None:
        return POSTGRESQL
    return SQLITE


class AttackReplay:
    """Registered by tests/conftest.py when `-m attack` selects the attack list."""

    def __init__(self) -> None:
        self.stores: dict[str, str] = {}
        self.outcomes: dict[str, bool] = {}

    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        self.stores = {item.nodeid: store_of(item) for item in items if item.get_closest_marker("attack")}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.nodeid not in self.stores or report.skipped:
            return
        held = self.outcomes.get(report.nodeid, True)
        self.outcomes[report.nodeid] = held and report.passed

    def counts(self) -> dict[str, tuple[int, int]]:
        totals: dict[str, tuple[int, int]] = {}
        for nodeid, held in self.outcomes.items():
            store = self.stores[nodeid]
            done, tried = totals.get(store, (0, 0))
            totals[store] = (done + int(held), tried + 1)
        return totals

    def pytest_terminal_summary(self, terminalreporter) -> None:
        counts = self.counts()
        terminalreporter.section("attack replay")
        for store in (SQLITE, POSTGRESQL):
            held, tried = counts.get(store, (0, 0))
            terminalreporter.write_line(f"attacks held: {held} / tried: {tried} ({store})")
        held = sum(done for done, _ in counts.values())
        tried = sum(tried for _, tried in counts.values())
        terminalreporter.write_line(f"attacks held: {held} / tried: {tried} (all stores)")
