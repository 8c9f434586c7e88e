"""`relais directory import`: load the extractions into the directory tables, idempotently, with a diff summary.

Reads every file once into memory-light records, compares each organisation and member with what is stored by a
digest of its imported fields, and writes only what changed, in one transaction (a failed import changes nothing).
Registered organisations (`relais org add`) sharing an imported id take the directory's name; an import never
creates a registered organisation nor a token.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import astuple, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.engine import Connection, Engine

from shared.auth import MSSANTE_TABLE, organisations
from shared.directory.extracts import (
    PRIMARY_CARE_PROFESSIONS,
    Malformed,
    MemberRecord,
    OrganisationRecord,
    read_finess,
    read_mssante,
    read_rpps,
)
from shared.directory.tables import DIRECTORY_MEMBER, DIRECTORY_ORGANISATION, create_directory_tables, folded
from shared.mssante_address import MssanteAddressError, check_mssante_address

BATCH = 2000
MAX_MALFORMED_KEPT = 100  # the report lists the first ones and counts the rest


@dataclass
class Counts:
    added: int = 0
    changed: int = 0
    unchanged: int = 0
    removed: int = 0


@dataclass
class ImportReport:
    organisations: Counts = field(default_factory=Counts)
    members: Counts = field(default_factory=Counts)
    absent: int = 0  # stored organisations of an imported source that this import did not name
    registered_renamed: int = 0
    lines: int = 0
    skipped: int = 0  # well-formed lines Relais does not keep (ADELI practitioners, no activity site)
    malformed: list[Malformed] = field(default_factory=list)
    malformed_count: int = 0

    def add_malformed(self, item: Malformed) -> None:
        self.malformed_count += 1
        if len(self.malformed) < MAX_MALFORMED_KEPT:
            self.malformed.append(item)


def _digest(values: Iterable[Any]) -> str:
    return hashlib.sha256("\x1f".join("" if v is None else str(v) for v in values).encode()).hexdigest()[:32]


@dataclass
class _Collected:
    organisations: dict[str, OrganisationRecord] = field(default_factory=dict)
    members: dict[tuple[str, str], MemberRecord] = field(default_factory=dict)
    professions: dict[str, set[str]] = field(default_factory=dict)


def _merge(found: OrganisationRecord, known: OrganisationRecord | None) -> OrganisationRecord:
    """FINESS is authoritative for an establishment; the Annuaire Santé fills what it lacks."""
    if known is None:
        return found
    if known.source.startswith("finess"):
        return replace(known, email=known.email or found.email, source="finess+rpps")
    return known


def collect(
    finess: Path | None, rpps: Path | None, report: ImportReport, on_bytes: Callable[[int], None] | None = None
) -> _Collected:
    collected = _Collected()
    if finess is not None:
        for item in read_finess(finess, on_bytes):
            report.lines += 1
            if isinstance(item, Malformed):
                report.add_malformed(item)
            elif item.role is None:
                report.skipped += 1  # a category Relais does not route to (pharmacy, EHPAD...)
            else:
                collected.organisations[item.id] = item
    if rpps is not None:
        for found in read_rpps(rpps, on_bytes):
            report.lines += 1
            if found is None:
                report.skipped += 1
                continue
            if isinstance(found, Malformed):
                report.add_malformed(found)
                continue
            organisation, member = found
            collected.organisations[organisation.id] = _merge(
                organisation, collected.organisations.get(organisation.id)
            )
            collected.members[(member.organisation_id, member.rpps)] = member
            collected.professions.setdefault(organisation.id, set()).add(member.profession_code or "")
    return collected


def _role(record: OrganisationRecord, professions: set[str]) -> str | None:
    """A FINESS establishment keeps its category's role; a practice of the Annuaire Santé is a team when a
    primary-care professional works there (a pharmacy or a laboratory is not)."""
    if record.source.startswith("finess") or record.id_system == "finess":
        return record.role
    return "team" if professions & PRIMARY_CARE_PROFESSIONS else None


@dataclass
class _Mailboxes:
    people: dict[str, str] = field(default_factory=dict)  # RPPS -> the practitioner's own box
    structures: dict[str, str] = field(default_factory=dict)  # structure id as the extraction writes it -> box

    def of_structure(self, record: OrganisationRecord) -> str | None:
        # The extraction names a structure as the Annuaire Santé does: bare, or with its IDNST type ("1" FINESS...).
        typed = {"finess": "1", "siret": "3"}.get(record.id_system, "")
        return self.structures.get(record.id) or (self.structures.get(typed + record.id) if typed else None)


def read_mailboxes(
    path: Path | None, report: ImportReport, domains: Sequence[str], on_bytes: Callable[[int], None] | None = None
) -> _Mailboxes:
    boxes = _Mailboxes()
    for item in read_mssante(path, on_bytes) if path is not None else ():
        report.lines += 1
        if isinstance(item, Malformed):
            report.add_malformed(item)
            continue
        try:
            address = check_mssante_address(item.address, domains) if item is not None else None
        except MssanteAddressError:
            address = None  # outside the MSSanté domains allowed here
        if item is None or address is None:
            report.skipped += 1
        elif item.kind == "PER" and item.rpps:
            boxes.people.setdefault(item.rpps, address)
        elif item.structure:
            boxes.structures.setdefault(item.structure, address)
    return boxes


def _organisation_row(
    record: OrganisationRecord, role: str | None, domains: Sequence[str], boxes: _Mailboxes
) -> dict[str, Any]:
    mssante = boxes.of_structure(record)
    if record.email and mssante is None:
        try:
            mssante = check_mssante_address(record.email, domains)
        except MssanteAddressError:
            mssante = None  # a plain mail address, not an MSSanté box: not kept
    row = {
        "id": record.id,
        "id_system": record.id_system,
        "name": record.name,
        "search_name": folded(record.name),
        "address": record.address,
        "postal_code": record.postal_code,
        "commune": record.commune,
        "role": role,
        "category": record.category,
        "mssante": mssante,
        "source": record.source,
    }
    row["digest"] = _digest(row.values())
    return row


def _member_row(record: MemberRecord, boxes: _Mailboxes) -> dict[str, Any]:
    row = {key: value for key, value in zip(MemberRecord.__dataclass_fields__, astuple(record), strict=True)}
    row["mssante"] = boxes.people.get(record.rpps)
    row["digest"] = _digest(row.values())
    return row


def _write(
    connection: Connection, table: Any, keys: Sequence[str], added: list[dict[str, Any]], changed: list[dict[str, Any]]
) -> None:
    for start in range(0, len(added), BATCH):
        connection.execute(insert(table), added[start : start + BATCH])
    if changed:
        where = [table.c[key] == bindparam(f"k_{key}") for key in keys]
        values: dict[str, Any] = {name: bindparam(name) for name in changed[0] if name not in keys}
        statement = update(table).where(*where).values(**values)
        for row in changed:
            for key in keys:
                row[f"k_{key}"] = row.pop(key)
        for start in range(0, len(changed), BATCH):
            connection.execute(statement, changed[start : start + BATCH])


def _apply_organisations(
    connection: Connection,
    rows: dict[str, dict[str, Any]],
    sources: set[str],
    report: ImportReport,
    now: datetime,
    prune: bool,
) -> None:
    table = DIRECTORY_ORGANISATION
    stored = {
        r.id: (r.digest, r.source) for r in connection.execute(select(table.c.id, table.c.digest, table.c.source))
    }
    added, changed = [], []
    for organisation_id, row in rows.items():
        known = stored.get(organisation_id)
        if known is None:
            added.append({**row, "updated_at": now})
        elif known[0] != row["digest"]:
            changed.append({**row, "updated_at": now})
        else:
            report.organisations.unchanged += 1
    absent = [i for i, (_d, source) in stored.items() if i not in rows and set(source.split("+")) & sources]
    report.organisations.added, report.organisations.changed = len(added), len(changed)
    _write(connection, table, ["id"], added, changed)
    report.absent = len(absent)
    if prune and absent:
        for start in range(0, len(absent), BATCH):
            chunk = absent[start : start + BATCH]
            connection.execute(delete(DIRECTORY_MEMBER).where(DIRECTORY_MEMBER.c.organisation_id.in_(chunk)))
            connection.execute(delete(table).where(table.c.id.in_(chunk)))
        report.organisations.removed = len(absent)


def _apply_members(
    connection: Connection, rows: dict[tuple[str, str], dict[str, Any]], report: ImportReport, now: datetime
) -> None:
    """Each organisation the file names gets the file's members: those it no longer lists leave."""
    table = DIRECTORY_MEMBER
    named = {organisation_id for organisation_id, _rpps in rows}
    query = select(table.c.organisation_id, table.c.rpps, table.c.digest)
    stored = {(r.organisation_id, r.rpps): r.digest for r in connection.execute(query)}
    added, changed = [], []
    for key, row in rows.items():
        known = stored.get(key)
        if known is None:
            added.append({**row, "updated_at": now})
        elif known != row["digest"]:
            changed.append({**row, "updated_at": now})
        else:
            report.members.unchanged += 1
    gone = [key for key in stored if key[0] in named and key not in rows]
    report.members.added, report.members.changed, report.members.removed = len(added), len(changed), len(gone)
    _write(connection, table, ["organisation_id", "rpps"], added, changed)
    for organisation_id, rpps in gone:
        connection.execute(delete(table).where(table.c.organisation_id == organisation_id, table.c.rpps == rpps))


def _update_registered(connection: Connection, rows: dict[str, dict[str, Any]], report: ImportReport) -> None:
    """A registered organisation with an imported id shows the directory's name; it gets the directory's MSSanté
    box only when it has none (a box set by hand wins)."""
    registered = {r.id: r.name for r in connection.execute(select(organisations.c.id, organisations.c.name))}
    boxes = set(connection.execute(select(MSSANTE_TABLE.c.organisation_id)).scalars())
    for organisation_id, name in registered.items():
        row = rows.get(organisation_id)
        if row is None:
            continue
        if row["name"] != name:
            connection.execute(
                update(organisations).where(organisations.c.id == organisation_id).values(name=row["name"])
            )
            report.registered_renamed += 1
        if row["mssante"] and organisation_id not in boxes:
            connection.execute(insert(MSSANTE_TABLE).values(organisation_id=organisation_id, address=row["mssante"]))


def import_directory(
    engine: Engine,
    *,
    finess: Path | None = None,
    rpps: Path | None = None,
    mssante: Path | None = None,
    mssante_domains: Sequence[str] = ("mssante.fr",),
    prune: bool = False,
    on_bytes: Callable[[int], None] | None = None,
) -> ImportReport:
    """Import the given extractions; the same files twice change nothing the second time."""
    create_directory_tables(engine)
    report = ImportReport()
    collected = collect(finess, rpps, report, on_bytes)
    boxes = read_mailboxes(mssante, report, mssante_domains, on_bytes)
    organisation_rows = {
        organisation_id: _organisation_row(
            record, _role(record, collected.professions.get(organisation_id, set())), mssante_domains, boxes
        )
        for organisation_id, record in collected.organisations.items()
    }
    member_rows = {key: _member_row(member, boxes) for key, member in collected.members.items()}
    sources = {name for name, path in (("finess", finess), ("rpps", rpps)) if path is not None}
    now = datetime.now(UTC)
    with engine.begin() as connection:
        _apply_organisations(connection, organisation_rows, sources, report, now, prune)
        _apply_members(connection, member_rows, report, now)
        _update_registered(connection, organisation_rows, report)
    return report
