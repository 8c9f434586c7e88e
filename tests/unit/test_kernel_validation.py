"""Intake helpers: inputs the review turned into 500s are 422s naming the field, never echoing the value."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from shared.errors import Unprocessable
from shared.validation import (
    check_date,
    check_date_range,
    check_datetime,
    check_int,
    check_no_nul,
    check_text,
)


def refused(call, *args, **kwargs) -> Unprocessable:
    with pytest.raises(Unprocessable) as raised:
        call(*args, **kwargs)
    assert raised.value.status_code == 422
    return raised.value


def test_text_length_and_nul():
    assert check_text("NDA-1", "nda", 300) == "NDA-1"
    error = refused(check_text, "x" * 301, "nda", 300)
    assert error.expression == ["nda"] and "xxx" not in error.diagnostics
    refused(check_text, "DU\x00PONT", "name", 200)
    refused(check_text, ["list"], "status", 20)
    refused(check_text, None, "name", 20, required=True)
    refused(check_text, "a\nb", "name", 20, single_line=True)
    assert check_text(None, "name", 20) is None


@pytest.mark.parametrize("value", [1e20, "1e20", 10**20, True, [1], {"a": 1}, "12a", 2**31])
def test_integers_out_of_range_or_not_integers(value):
    refused(check_int, value, "eventsSinceNumber", minimum=0)


def test_integers_in_range():
    assert check_int("42", "n") == 42 and check_int(0, "n", minimum=0) == 0


@pytest.mark.parametrize("value", ["0001-01-02", "9999-12-31", "1869-12-31", "2024-13-01", "2024-01-01junk", 5])
def test_dates_out_of_window_or_malformed(value):
    refused(check_date, value, "from")


def test_birth_date_in_the_future_is_refused():
    tomorrow = datetime.now(UTC).date() + timedelta(days=1)
    refused(check_date, tomorrow.isoformat(), "birthDate", not_future=True)
    assert check_date("1985-05-12", "birthDate", not_future=True) == date(1985, 5, 12)


def test_datetimes_and_ranges():
    assert check_datetime("2026-01-01T10:00:00+01:00", "at").year == 2026
    refused(check_datetime, "2026-01-01T10:00:00", "at")
    refused(check_datetime, "9999-12-31T23:59:59+00:00", "at")
    refused(check_date_range, "2026-02-01", "2026-01-01", "period")
    refused(check_date_range, "2020-01-01", "2026-01-01", "period")
    assert check_date_range("2026-01-01", "2026-01-31", "period") == (date(2026, 1, 1), date(2026, 1, 31))


def test_nul_anywhere_in_a_document():
    check_no_nul({"a": [{"b": "ok"}]})
    refused(check_no_nul, {"a": [{"b": "o\x00k"}]})
    refused(check_no_nul, {"k\x00": 1})
    deep: list = []
    for _ in range(5000):
        deep = [deep]
    check_no_nul(deep)
