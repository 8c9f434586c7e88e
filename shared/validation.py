"""Intake checks for values headed to the database: text length and NUL bytes, integer and date ranges.

PostgreSQL refuses a NUL byte in text and a string longer than its column, and Python's dates stop at
years 1 and 9999: each surfaced as a 500. Services call these at intake so the caller gets a 422
OperationOutcome that names the field, never the value.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from shared.clock import utcnow
from shared.errors import Unprocessable

# A sane window for clinical and scheduling dates: no patient born before 1870, nothing planned past 2200.
MIN_DATE = date(1870, 1, 1)
MAX_DATE = date(2200, 12, 31)
# PostgreSQL integer and bigint bounds.
INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)


def check_text(value: Any, field: str, max_length: int, *, required: bool = False,
               single_line: bool = False) -> str | None:
    """A string of at most `max_length` characters, without NUL (and without line breaks if `single_line`)."""
    if value is None:
        if required:
            raise Unprocessable(f"{field} is required", expression=[field])
        return None
    if not isinstance(value, str):
        raise Unprocessable(f"{field} must be a string", expression=[field])
    if len(value) > max_length:
        raise Unprocessable(f"{field} is longer than {max_length} characters", expression=[field],
                            issue_code="too-long")
    if "\x00" in value:
        raise Unprocessable(f"{field} must not contain NUL characters", expression=[field])
    if single_line and ("\n" in value or "\r" in value):
        raise Unprocessable(f"{field} must be a single line", expression=[field])
    return value


def check_int(value: Any, field: str, *, minimum: int = INT32[0], maximum: int = INT32[1]) -> int:
    """An integer (not a bool, not a float such as 1e20) within [minimum, maximum]; accepts digit strings."""
    if isinstance(value, bool):
        raise Unprocessable(f"{field} must be an integer", expression=[field])
    if isinstance(value, str):
        text = value.strip()
        if not text.lstrip("+-").isdigit() or len(text) > 20:
            raise Unprocessable(f"{field} must be an integer", expression=[field])
        value = int(text)
    if not isinstance(value, int):
        raise Unprocessable(f"{field} must be an integer", expression=[field])
    if not minimum <= value <= maximum:
        raise Unprocessable(f"{field} must be between {minimum} and {maximum}", expression=[field])
    return value


def check_date(value: Any, field: str, *, earliest: date = MIN_DATE, latest: date = MAX_DATE,
               not_future: bool = False, today: date | None = None) -> date:
    """A date (or ISO `YYYY-MM-DD` string, or datetime) within [earliest, latest]; `not_future` for birth dates."""
    parsed = _as_date(value, field)
    upper = min(latest, today or utcnow().date()) if not_future else latest
    if parsed < earliest or parsed > upper:
        bound = "today" if not_future and upper != latest else upper.isoformat()
        raise Unprocessable(f"{field} must be between {earliest.isoformat()} and {bound}", expression=[field])
    return parsed


def check_datetime(value: Any, field: str, *, earliest: date = MIN_DATE, latest: date = MAX_DATE) -> datetime:
    """An aware ISO datetime within the window, so that adding a few days to it can never overflow."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError as exc:
            raise Unprocessable(f"{field} must be an ISO 8601 date-time", expression=[field]) from exc
    if not isinstance(value, datetime):
        raise Unprocessable(f"{field} must be a date-time", expression=[field])
    if value.tzinfo is None:
        raise Unprocessable(f"{field} must carry a time zone", expression=[field])
    check_date(value.date(), field, earliest=earliest, latest=latest)
    return value


def check_date_range(start: Any, end: Any, field: str, *, max_days: int = 366) -> tuple[date, date]:
    """A query window: both ends valid, start <= end, at most `max_days` long (dashboards, exports)."""
    first, last = check_date(start, f"{field}.start"), check_date(end, f"{field}.end")
    if last < first:
        raise Unprocessable(f"{field} ends before it starts", expression=[field])
    if last - first > timedelta(days=max_days):
        raise Unprocessable(f"{field} spans more than {max_days} days", expression=[field])
    return first, last


def check_no_nul(document: Any, field: str = "$") -> None:
    """Refuse NUL characters anywhere in a JSON-like document (iterative: no recursion limit)."""
    stack: list[Any] = [document]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            if "\x00" in node:
                raise Unprocessable("text must not contain NUL characters", expression=[field])
        elif isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list | tuple):
            stack.extend(node)


def _as_date(value: Any, field: str) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str) and len(value) <= 40 and (len(value) == 10 or value[10:11] == "T"):
        try:
            return date.fromisoformat(value[:10])
        except ValueError:
            pass
    raise Unprocessable(f"{field} must be a date (YYYY-MM-DD)", expression=[field])
