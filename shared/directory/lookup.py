"""Reads of the directory: display names for identifiers, and the teams a coordinator may look for."""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from cachetools import TTLCache
from sqlalchemy import and_, func, select
from sqlalchemy.engine import Connection, Engine

from shared.auth import organisations
from shared.communes import all_communes, commune, communes_for_postal_code
from shared.directory.tables import DIRECTORY_MEMBER, DIRECTORY_ORGANISATION, create_directory_tables, folded

MAX_IDS = 500  # names asked at once (a page or a feed shows far fewer)


@dataclass(frozen=True)
class Profession:
    code: str | None
    display: str | None
    count: int


@dataclass(frozen=True)
class TeamFound:
    id: str
    name: str
    registered: bool  # registered with Relais: it can be proposed ($assign) and receive notifications
    address: str | None
    postal_code: str | None
    commune: str | None  # INSEE code
    professions: tuple[Profession, ...]


@dataclass(frozen=True)
class Scope:
    """Where a caller may look: some communes, one département, or everywhere (both None)."""

    communes: frozenset[str] | None = None
    department: str | None = None

    @property
    def empty(self) -> bool:
        return self.communes is not None and not self.communes


@lru_cache(maxsize=1)
def _communes_by_name() -> dict[str, tuple[str, ...]]:
    found: dict[str, list[str]] = defaultdict(list)
    for item in all_communes().values():
        found[folded(item.name)].append(item.insee)
    return {name: tuple(sorted(codes)) for name, codes in found.items()}


def communes_named(text: str) -> tuple[str, ...]:
    """INSEE codes a `commune` parameter names: an INSEE code, a postal code, or a commune's name."""
    text = text.strip()
    if commune(text) is not None:
        return (text,)
    if len(text) == 5 and text.isdigit():
        return tuple(item.insee for item in communes_for_postal_code(text))
    return _communes_by_name().get(folded(text), ())


def communes_of_postal_codes(postal_codes: Iterable[str]) -> frozenset[str]:
    return frozenset(item.insee for code in postal_codes for item in communes_for_postal_code(code))


def department_of(insee: str) -> str:
    return insee[:3] if insee.startswith("97") else insee[:2]


def _escaped(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class DirectoryLookup:
    def __init__(self, engine: Engine, *, cache_seconds: float = 60.0) -> None:
        self.engine = engine
        create_directory_tables(engine)
        # Names change with an import or `relais org update`: a minute late is fine, a query per notification is not.
        self._names: TTLCache[str, str | None] = TTLCache(maxsize=10_000, ttl=cache_seconds)
        self._lock = threading.Lock()

    def names(self, ids: Iterable[str]) -> dict[str, str]:
        """Display names: a registered organisation's own (which an import keeps current), else the directory's."""
        wanted = [i for i in dict.fromkeys(ids) if i][:MAX_IDS]
        with self._lock:
            known = {i: self._names[i] for i in wanted if i in self._names}
        missing = [i for i in wanted if i not in known]
        if missing:
            table = DIRECTORY_ORGANISATION
            with self.engine.connect() as connection:
                query = select(table.c.id, table.c.name).where(table.c.id.in_(missing))
                found = dict(connection.execute(query).all())
                query = select(organisations.c.id, organisations.c.name).where(organisations.c.id.in_(missing))
                found.update(dict(connection.execute(query).all()))
            with self._lock:
                for organisation_id in missing:
                    name = found.get(organisation_id)
                    known[organisation_id] = self._names[organisation_id] = str(name) if name is not None else None
        return {key: value for key, value in known.items() if value is not None}

    def commune_of(self, organisation_id: str) -> str | None:
        table = DIRECTORY_ORGANISATION
        with self.engine.connect() as connection:
            return connection.execute(select(table.c.commune).where(table.c.id == organisation_id)).scalar_one_or_none()

    def search_teams(
        self, *, name: str | None, communes: Iterable[str] | None, scope: Scope, limit: int
    ) -> tuple[list[TeamFound], bool]:
        """Teams by folded name part and/or commune, inside the caller's scope; (found, more were left off)."""
        if scope.empty:
            return [], False
        table = DIRECTORY_ORGANISATION
        where = [table.c.role == "team"]
        if name:
            where.append(table.c.search_name.like(f"%{_escaped(folded(name))}%", escape="\\"))
        if communes is not None:
            where.append(table.c.commune.in_(list(communes)))
        if scope.communes is not None:
            where.append(table.c.commune.in_(sorted(scope.communes)))
        if scope.department is not None:
            where.append(table.c.commune.like(f"{_escaped(scope.department)}%", escape="\\"))
        registered = select(organisations.c.id).where(organisations.c.id == table.c.id).exists()
        query = (
            select(table, registered.label("registered"))
            .where(and_(*where))
            .order_by(table.c.search_name, table.c.id)
            .limit(limit + 1)
        )
        with self.engine.connect() as connection:
            rows = connection.execute(query).all()[: limit + 1]
            professions = self._professions(connection, [row.id for row in rows[:limit]])
        teams = [
            TeamFound(
                row.id,
                row.name,
                bool(row.registered),
                row.address,
                row.postal_code,
                row.commune,
                professions.get(row.id, ()),
            )
            for row in rows[:limit]
        ]
        return teams, len(rows) > limit

    @staticmethod
    def _professions(connection: Connection, ids: list[str]) -> dict[str, tuple[Profession, ...]]:
        if not ids:
            return {}
        table = DIRECTORY_MEMBER
        query = (
            select(table.c.organisation_id, table.c.profession_code, table.c.profession, func.count())
            .where(table.c.organisation_id.in_(ids))
            .group_by(table.c.organisation_id, table.c.profession_code, table.c.profession)
            .order_by(table.c.organisation_id, table.c.profession_code)
        )
        found: dict[str, list[Profession]] = defaultdict(list)
        for organisation_id, code, display, count in connection.execute(query).all():
            found[organisation_id].append(Profession(code, display, int(count)))
        return {key: tuple(value) for key, value in found.items()}


__all__ = ["DirectoryLookup", "Scope", "TeamFound", "communes_named", "communes_of_postal_codes", "department_of"]
