"""The kernel's FHIR search-parameter parser (shared/search.py): typed, bounded values, strict on names."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.errors import BadRequest
from shared.search import DateRange, SearchSpec

SPEC = SearchSpec(tokens=frozenset({"status", "code"}), dates=frozenset({"_lastUpdated"}), default_count=20,
                  max_count=100)
DAY = datetime(2026, 11, 23, tzinfo=UTC)


@pytest.mark.parametrize(("value", "expected"), [
    ("2026-11-23", DateRange(DAY, DAY + timedelta(days=1))),
    ("ge2026-11-23", DateRange(DAY, None)),
    ("gt2026-11-23", DateRange(DAY + timedelta(days=1), None)),
    ("le2026-11-23", DateRange(None, DAY + timedelta(days=1))),
    ("lt2026-11-23", DateRange(None, DAY)),
    ("gt2026-11-23T00:00:00Z", DateRange(DAY + timedelta(microseconds=1), None)),
    ("le2026-11-23T00:00:00+00:00", DateRange(None, DAY + timedelta(microseconds=1))),
])
def test_date_prefixes_give_half_open_ranges(value, expected):
    assert SPEC.parse([("_lastUpdated", value)]).dates["_lastUpdated"] == expected


def test_two_bounds_narrow_one_range_and_counts_are_capped():
    parsed = SPEC.parse([("_lastUpdated", "ge2026-11-01"), ("_lastUpdated", "lt2026-11-23"),
                         ("_lastUpdated", "ge2026-11-10"), ("_count", "99999"), ("_offset", "123456")])
    assert parsed.dates["_lastUpdated"] == DateRange(datetime(2026, 11, 10, tzinfo=UTC), DAY)
    assert (parsed.count, parsed.offset) == (100, 10_000)
    assert SPEC.parse([("_count", "0")]).count == 1
    assert SPEC.parse([("status", "a, b"), ("status", "c")]).tokens["status"] == ("a", "b", "c")


@pytest.mark.parametrize(("name", "value"), [
    ("_lastUpdated", "9999-12-31"), ("_lastUpdated", "gt9999-12-31"), ("_lastUpdated", "0001-01-01"),
    ("_lastUpdated", "le9999-12-31T23:59:59.999999+00:00"), ("_lastUpdated", "2026-11-23T10:00:00"),
    ("_lastUpdated", "yesterday"), ("_lastUpdated", "ge" + "9" * 5000), ("_count", "-1"), ("_count", "1e3"),
    ("_offset", "9" * 5000), ("subject", "x"), ("status", "s" * 201), ("code", ",".join(["c"] * 51)),
])
def test_out_of_bounds_or_unknown_values_are_400s_naming_the_parameter(name, value):
    with pytest.raises(BadRequest) as refused:
        SPEC.parse([(name, value)])
    assert refused.value.status_code == 400
