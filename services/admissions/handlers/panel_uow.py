"""The units of work a panel upload hands to the reused CareTeam handlers, inside one transaction per chunk of lines.

- `Savepoint`: entering opens a savepoint, commit releases it; leaving without commit rolls back that line alone.
- `Prefetched`: for patients nobody treats (the bulk of a first upload), the handler's reads are answered from what
  was read once for the whole chunk, and its writes join the chunk's transaction, flushed once at its end (where the
  one-active-team index still refuses a concurrent enrolment: the chunk is then replayed line by line).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Self

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import SessionTransaction
from sqlmodel import Session, SQLModel, col

from services.admissions.adapters.orm import (
    CareTeamParticipantRow,
    CareTeamRow,
    ConsentRow,
    DacCase,
    PatientRow,
    TeamChangeRow,
)
from services.admissions.adapters.repositories import (
    CareTeamRepository,
    ConsentRepository,
    DacCaseRepository,
    PatientRepository,
    TeamChangeRepository,
)
from services.admissions.uow import AdmissionsUnitOfWork


class Savepoint(AdmissionsUnitOfWork):
    committed: bool
    _savepoint: SessionTransaction

    @classmethod
    def inside(cls, outer: AdmissionsUnitOfWork) -> Self:
        nested = cls.__new__(cls)
        nested.__dict__.update(outer.__dict__)  # the chunk's session, outbox and repositories
        nested.committed = False
        return nested

    def __enter__(self) -> Self:
        self._savepoint = self.session.begin_nested()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._savepoint.is_active:
            self._savepoint.rollback()

    def commit(self) -> None:
        self.session.flush()
        self._savepoint.commit()
        self.committed = True

    def rollback(self) -> None:
        if self._savepoint.is_active:
            self._savepoint.rollback()


@dataclass
class ChunkFacts:
    """What the enrolment handler reads about each patient of a chunk, read once."""

    active: dict[str, CareTeamRow] = field(default_factory=dict)
    consents: dict[str, ConsentRow] = field(default_factory=dict)
    dac_cases: dict[str, list[DacCase]] = field(default_factory=dict)
    postal_codes: dict[str, str | None] = field(default_factory=dict)
    added: dict[str, CareTeamRow] = field(default_factory=dict)
    postal_writes: dict[str, tuple[str, datetime]] = field(default_factory=dict)

    def write_postal_codes(self, session: Session) -> None:
        """The queued postal codes, as the repository's upsert would write them one by one."""
        if not self.postal_writes:
            return
        table = SQLModel.metadata.tables[str(PatientRow.__tablename__)]
        rows = [
            {"patient_key": k, "postal_code": code, "updated_at": at} for k, (code, at) in self.postal_writes.items()
        ]
        if session.get_bind().dialect.name == "postgresql":
            pg = postgresql.insert(table)
            changes = {"postal_code": pg.excluded.postal_code, "updated_at": pg.excluded.updated_at}
            session.execute(pg.on_conflict_do_update(index_elements=["patient_key"], set_=changes), rows)
        else:
            lite = sqlite.insert(table)
            changes = {"postal_code": lite.excluded.postal_code, "updated_at": lite.excluded.updated_at}
            session.execute(lite.on_conflict_do_update(index_elements=["patient_key"], set_=changes), rows)
        self.postal_writes.clear()

    @classmethod
    def read(cls, session: Session, keys: list[str]) -> ChunkFacts:
        facts = cls()
        active = select(CareTeamRow).where(col(CareTeamRow.patient_key).in_(keys), col(CareTeamRow.status) == "active")
        facts.active = {row.patient_key: row for row in session.execute(active).scalars()}
        consents = select(ConsentRow).where(col(ConsentRow.patient_key).in_(keys))
        facts.consents = {row.patient_key: row for row in session.execute(consents).scalars()}
        cases = (
            select(DacCase)
            .where(col(DacCase.patient_key).in_(keys), col(DacCase.closed_at).is_(None))
            .order_by(col(DacCase.opened_at), col(DacCase.id))
        )
        facts.dac_cases = {}
        for row in session.execute(cases).scalars():  # oldest first, as DacCaseRepository.open_for_patient
            facts.dac_cases.setdefault(row.patient_key, []).append(row)
        places = select(col(PatientRow.patient_key), col(PatientRow.postal_code)).where(
            col(PatientRow.patient_key).in_(keys)
        )
        facts.postal_codes = {key: code for key, code in session.execute(places).all()}
        return facts


class _CareTeams(CareTeamRepository):
    def __init__(self, session: Session, facts: ChunkFacts) -> None:
        super().__init__(session)
        self.facts = facts

    def active_for_patient(self, patient_key: str) -> CareTeamRow | None:
        return self.facts.active.get(patient_key)

    def latest_for_patient(self, patient_key: str) -> CareTeamRow | None:
        return self.facts.added.get(patient_key) or self.facts.active.get(patient_key)

    def current_referent(self, careteam_id: str) -> CareTeamParticipantRow | None:
        return None  # a panel line names no participant

    def add(self, row: object) -> None:
        super().add(row)
        if isinstance(row, CareTeamRow):
            self.facts.added[row.patient_key] = row
            if row.status == "active":
                self.facts.active[row.patient_key] = row

    def flush(self) -> None:
        """Deferred to the chunk's end (one insert for the chunk)."""


class _TeamChanges(TeamChangeRepository):
    def pending_by(self, patient_key: str, to_team_org_id: str) -> TeamChangeRow | None:
        return None  # the upload sends here only patients without this team's enrolment or request


class _Consents(ConsentRepository):
    def __init__(self, session: Session, facts: ChunkFacts) -> None:
        super().__init__(session)
        self.facts = facts

    def get(self, patient_key: str) -> ConsentRow | None:
        return self.facts.consents.get(patient_key)


class _DacCases(DacCaseRepository):
    def __init__(self, session: Session, facts: ChunkFacts) -> None:
        super().__init__(session)
        self.facts = facts

    def open_for_patient(self, patient_key: str) -> list[DacCase]:
        return list(self.facts.dac_cases.get(patient_key, ()))


class _Patients(PatientRepository):
    def __init__(self, session: Session, facts: ChunkFacts) -> None:
        super().__init__(session)
        self.facts = facts

    def postal_code(self, patient_key: str) -> str | None:
        return self.facts.postal_codes.get(patient_key)

    def record_postal_code(self, patient_key: str, postal_code: str, now: datetime) -> bool:
        """Queued: the chunk writes its postal codes in one statement (`ChunkFacts.write_postal_codes`)."""
        if self.facts.postal_codes.get(patient_key) == postal_code:
            return False
        self.facts.postal_codes[patient_key] = postal_code
        self.facts.postal_writes[patient_key] = (postal_code, now)
        return True


class Prefetched(AdmissionsUnitOfWork):
    @classmethod
    def inside(cls, outer: AdmissionsUnitOfWork, facts: ChunkFacts) -> Self:
        nested = cls.__new__(cls)
        nested.__dict__.update(outer.__dict__)  # the chunk's session and outbox
        session = outer.session
        nested.careteams = _CareTeams(session, facts)
        nested.team_changes = _TeamChanges(session)
        nested.consents = _Consents(session, facts)
        nested.dac_cases = _DacCases(session, facts)
        nested.patients = _Patients(session, facts)
        return nested

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        """The chunk's transaction ends with the chunk."""

    def commit(self) -> None:
        """The chunk commits once, at its end."""

    def rollback(self) -> None:
        raise RuntimeError("a prefetched enrolment never rolls back on its own: the chunk is replayed")
