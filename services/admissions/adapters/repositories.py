"""Queries of the admissions service; they add and read, only the unit of work commits."""

from __future__ import annotations

from sqlalchemy import select
from sqlmodel import Session

from services.admissions.adapters.orm import (
    Admission,
    AdmissionMessageRow,
    CareTeamParticipantRow,
    CareTeamRow,
    ConsentRow,
    DacCase,
    Territory,
)


class _Repository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, row: object) -> None:
        self.session.add(row)

    def flush(self) -> None:
        self.session.flush()


class MessageRepository(_Repository):
    def get(self, message_id: str) -> AdmissionMessageRow | None:
        return self.session.get(AdmissionMessageRow, message_id)


class AdmissionRepository(_Repository):
    def get(self, admission_id: str) -> Admission | None:
        return self.session.get(Admission, admission_id)

    def by_encounter(self, hospital_org_id: str, encounter_key: str) -> Admission | None:
        query = select(Admission).where(
            Admission.hospital_org_id == hospital_org_id, Admission.encounter_key == encounter_key
        )
        return self.session.execute(query).scalars().first()


class CareTeamRepository(_Repository):
    def get(self, careteam_id: str) -> CareTeamRow | None:
        return self.session.get(CareTeamRow, careteam_id)

    def active_for_patient(self, patient_key: str) -> CareTeamRow | None:
        query = select(CareTeamRow).where(
            CareTeamRow.patient_key == patient_key, CareTeamRow.status == "active"
        )
        return self.session.execute(query).scalars().first()

    def for_team(self, team_org_id: str, status: str | None = None) -> list[CareTeamRow]:
        query = select(CareTeamRow).where(CareTeamRow.team_org_id == team_org_id)
        if status:
            query = query.where(CareTeamRow.status == status)
        return list(self.session.execute(query.order_by(CareTeamRow.started_at, CareTeamRow.id)).scalars())

    def participants(self, careteam_id: str) -> list[CareTeamParticipantRow]:
        query = (
            select(CareTeamParticipantRow)
            .where(CareTeamParticipantRow.careteam_id == careteam_id)
            .order_by(CareTeamParticipantRow.id)
        )
        return list(self.session.execute(query).scalars())

    def current_referent(self, careteam_id: str) -> CareTeamParticipantRow | None:
        query = select(CareTeamParticipantRow).where(
            CareTeamParticipantRow.careteam_id == careteam_id,
            CareTeamParticipantRow.role == "referent",
            CareTeamParticipantRow.period_end.is_(None),
        )
        return self.session.execute(query).scalars().first()


class DacCaseRepository(_Repository):
    def get(self, case_id: str) -> DacCase | None:
        return self.session.get(DacCase, case_id)

    def open_for_patient(self, patient_key: str) -> DacCase | None:
        query = (
            select(DacCase)
            .where(DacCase.patient_key == patient_key, DacCase.closed_at.is_(None))
            .order_by(DacCase.opened_at)
        )
        return self.session.execute(query).scalars().first()


class ConsentRepository(_Repository):
    def get(self, patient_key: str) -> ConsentRow | None:
        return self.session.get(ConsentRow, patient_key)


class TerritoryRepository(_Repository):
    def get(self, postal_code: str) -> Territory | None:
        return self.session.get(Territory, postal_code)
