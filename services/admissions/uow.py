"""The admissions unit of work: the kernel's outbox, inbox and audit plus this service's repositories."""

from __future__ import annotations

from sqlmodel import Session

from services.admissions.adapters.repositories import (
    AdmissionRepository,
    CareTeamRepository,
    ConsentRepository,
    DacCaseRepository,
    MessageRepository,
    PatientRepository,
    TeamChangeRepository,
    TerritoryRepository,
)
from shared.db.uow import UnitOfWork


class AdmissionsUnitOfWork(UnitOfWork):
    messages: MessageRepository
    admissions: AdmissionRepository
    careteams: CareTeamRepository
    dac_cases: DacCaseRepository
    consents: ConsentRepository
    territories: TerritoryRepository
    patients: PatientRepository
    team_changes: TeamChangeRepository

    def _open_repositories(self, session: Session) -> None:
        self.messages = MessageRepository(session)
        self.admissions = AdmissionRepository(session)
        self.careteams = CareTeamRepository(session)
        self.dac_cases = DacCaseRepository(session)
        self.consents = ConsentRepository(session)
        self.territories = TerritoryRepository(session)
        self.patients = PatientRepository(session)
        self.team_changes = TeamChangeRepository(session)
