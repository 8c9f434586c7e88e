"""One FHIR search-parameter parser: typed, bounded values for every search route.

A route names the parameters it serves (token and date parameters, `_count`, `_offset`); anything else is a
400 (strict handling). Dates keep to the kernel's window (shared.validation), so whole-day arithmetic can never
overflow; counts and offsets are capped rather than honoured (a server may return fewer than asked).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo

from shared.errors import BadRequest
from shared.validation import MAX_DATE, MIN_DATE

PREFIXES = ("eq", "ge", "gt", "le", "lt")
_MAX_VALUE_CHARS = 200
_MAX_VALUES = 50


@dataclass(frozen=True)
class DateRange:
    """`start <= moment < end`, either side open (None)."""

    start: datetime | None = None
    end: datetime | None = None

    def narrowed(self, start: datetime | None, end: datetime | None) -> DateRange:
        return DateRange(
            start if self.start is None else (self.start if start is None else max(self.start, start)),
            end if self.end is None else (self.end if end is None else min(self.end, end)),
        )


@dataclass(frozen=True)
class SearchParams:
    tokens: dict[str, tuple[str, ...]] = field(default_factory=dict)
    dates: dict[str, DateRange] = field(default_factory=dict)
    count: int = 20
    offset: int = 0


@dataclass(frozen=True)
class SearchSpec:
    """The parameters one search route serves, and its caps."""

    tokens: frozenset[str] = frozenset()
    dates: frozenset[str] = frozenset()
    default_count: int = 20
    max_count: int = 100
    max_offset: int = 10_000
    # A bare date covers its whole day in this zone.
    zone: tzinfo = UTC

    def parse(self, params: Iterable[tuple[str, str]]) -> SearchParams:
        params = list(params)
        known = self.tokens | self.dates | {"_count", "_offset"}
        unknown = sorted({name for name, _ in params} - known)
        if unknown:
            raise BadRequest(f"unknown search parameter(s): {', '.join(unknown)[:200]}",
                             expression=[name[:50] for name in unknown[:5]])
        tokens: dict[str, list[str]] = {}
        dates: dict[str, DateRange] = {}
        count, offset = self.default_count, 0
        for name, value in params:
            if name in self.tokens:
                values = tokens.setdefault(name, [])
                values.extend(_tokens(value, name))
                if len(values) > _MAX_VALUES:
                    raise BadRequest(f"{name} takes at most {_MAX_VALUES} values", expression=[name])
            elif name in self.dates:
                start, end = date_bound(value, name, self.zone)
                dates[name] = dates.get(name, DateRange()).narrowed(start, end)
            elif name == "_count":
                count = min(max(non_negative(value, name), 1), self.max_count)
            else:
                offset = min(non_negative(value, name), self.max_offset)
        return SearchParams({k: tuple(v) for k, v in tokens.items()}, dates, count, offset)


def _tokens(value: str, name: str) -> list[str]:
    if len(value) > _MAX_VALUE_CHARS * _MAX_VALUES:
        raise BadRequest(f"{name} is too long", expression=[name])
    values = [part.strip() for part in value.split(",") if part.strip()]
    if any(len(part) > _MAX_VALUE_CHARS for part in values):
        raise BadRequest(f"each {name} value has at most {_MAX_VALUE_CHARS} characters", expression=[name])
    return values


def non_negative(value: str, name: str) -> int:
    if not value.isdigit() or len(value) > 12:
        raise BadRequest(f"{name} must be a non-negative integer", expression=[name])
    return int(value)


def date_bound(value: str, name: str, zone: tzinfo = UTC) -> tuple[datetime | None, datetime | None]:
    """The [start, end) a prefixed date or dateTime search value admits; a bare date is its whole day."""
    prefix, rest = (value[:2], value[2:]) if value[:2] in PREFIXES else ("eq", value)
    if len(rest) > 40:
        raise BadRequest(f"{name} is not a date or dateTime", expression=[name])
    try:
        if len(rest) == 10:
            day = date.fromisoformat(rest)
            _in_window(day, name)
            first = datetime.combine(day, time(), zone)
            after = datetime.combine(day + timedelta(days=1), time(), zone)
        else:
            first = datetime.fromisoformat(rest.replace("Z", "+00:00"))
            if first.tzinfo is None:
                raise BadRequest(f"{name} needs a time zone", expression=[name])
            _in_window(first.astimezone(UTC).date(), name)
            after = first + timedelta(microseconds=1)
    except ValueError as exc:
        raise BadRequest(f"{name} is not a date or dateTime", expression=[name]) from exc
    return {
        "eq": (first, after),
        "ge": (first, None),
        "gt": (after, None),
        "le": (None, after),
        "lt": (None, first),
    }[prefix]


def _in_window(day: date, name: str) -> None:
    if not MIN_DATE <= day <= MAX_DATE:
        raise BadRequest(f"{name} must be between {MIN_DATE.isoformat()} and {MAX_DATE.isoformat()}",
                         expression=[name])
