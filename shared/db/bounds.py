"""The database's own limits checked before a flush: no over-long string and no NUL byte reaches PostgreSQL.

Intake checks (shared/validation.py) name the FHIR field; this is the backstop for any value they miss, so
an input PostgreSQL would refuse (a 500) is a 422 on every database, SQLite included (which would accept it).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import String, event, inspect
from sqlalchemy.orm import Mapper
from sqlalchemy.orm import Session as OrmSession
from sqlalchemy.types import TypeDecorator

from shared.errors import Unprocessable

_COLUMNS: dict[type, tuple[tuple[str, int | None], ...]] = {}


def _bounded_columns(cls: type) -> tuple[tuple[str, int | None], ...]:
    """(attribute, length or None) of each string column of a mapped class (computed once per class)."""
    found = _COLUMNS.get(cls)
    if found is not None:
        return found
    mapper: Mapper[Any] = inspect(cls)
    columns: list[tuple[str, int | None]] = []
    for attr in mapper.column_attrs:
        for column in attr.columns:
            # SQLModel's AutoString is a TypeDecorator over String: judge what is stored, not the wrapper.
            stored = column.type.impl_instance if isinstance(column.type, TypeDecorator) else column.type
            if isinstance(stored, String):
                columns.append((attr.key, stored.length))
    _COLUMNS[cls] = tuple(columns)
    return _COLUMNS[cls]


def check_bounds(instance: Any) -> None:
    """Raise Unprocessable (422, naming the field, never the value) for a string too long or holding NUL."""
    name = type(instance).__name__.removesuffix("Row")
    for key, length in _bounded_columns(type(instance)):
        value = instance.__dict__.get(key)
        if not isinstance(value, str):
            continue
        if length is not None and len(value) > length:
            raise Unprocessable(f"{name}.{key} is longer than {length} characters", expression=[f"{name}.{key}"],
                                issue_code="too-long")
        if "\x00" in value:
            raise Unprocessable(f"{name}.{key} must not contain NUL characters", expression=[f"{name}.{key}"])


def _before_flush(session: OrmSession, _context: Any, _instances: Any) -> None:
    for instance in (*session.new, *session.dirty):
        check_bounds(instance)


def install() -> None:
    """Check every flush of every ORM session in the process (idempotent)."""
    if not event.contains(OrmSession, "before_flush", _before_flush):
        event.listen(OrmSession, "before_flush", _before_flush)
