"""Queries of the admissions service; they add and read, only the unit of work commits."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Table, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import SQLModel, col

from services.admissions.adapters.orm import (
    Admission,
    AdmissionMessageRow,
    CareTeamParticipantRow,
    CareTeamRow,
    ConsentRow,
    DacCase,
    PatientRow,
    TeamChangeRow,
    Territory,
)
from shared.db.repository import Repository


def _table(model: type[SQLModel]) -> Table:
    return SQLModel.metadata.tables[str(model.__tablename__)]


class MessageRepository(Repository):
    def get(self, message_id: str) -> AdmissionMessageRow | None:
        return self.session.get(AdmissionMessageRow, message_id)


class AdmissionRepository(Repository):
    def get(self, admission_id: str) -> Admission | None:
        return self.session.get(Admission, admission_id)

    def by_encounter(self, hospital_org_id: str, encounter_key: str) -> Admission | None:
        query = select(Admission).where(
            col(Admission.hospital_org_id) == hospital_org_id, col(Admission.encounter_key) == encounter_key
        )
        return self.session.execute(query).scalars().first()

    def hospitals_for_patient(self, patient_key: str) -> frozenset[str]:
        """Hospitals with an admission of the patient that was not cancelled (the care circle's hospitals)."""
        query = select(col(Admission.hospital_org_id)).where(
            col(Admission.patient_key) == patient_key, col(Admission.status) != "cancelled"
        )
        return frozenset(self.session.execute(query).scalars())

    def latest_stay(self, patient_key: str, hospital_org_id: str) -> Admission | None:
        """The hospital's latest admission of the patient that was not cancelled (the stay it refers to the DAC)."""
        query = (
            select(Admission)
            .where(
                col(Admission.patient_key) == patient_key,
                col(Admission.hospital_org_id) == hospital_org_id,
                col(Admission.status) != "cancelled",
            )
            .order_by(col(Admission.recorded_at).desc(), col(Admission.id))
        )
        return self.session.execute(query).scalars().first()


class CareTeamRepository(Repository):
    def get(self, careteam_id: str) -> CareTeamRow | None:
        return self.session.get(CareTeamRow, careteam_id)

    def active_for_patient(self, patient_key: str) -> CareTeamRow | None:
        query = select(CareTeamRow).where(
            col(CareTeamRow.patient_key) == patient_key, col(CareTeamRow.status) == "active"
        )
        return self.session.execute(query).scalars().first()

    def latest_for_patient(self, patient_key: str) -> CareTeamRow | None:
        """The active team, else the most recently started one (its id names the ended enrolment)."""
        query = (
            select(CareTeamRow)
            .where(col(CareTeamRow.patient_key) == patient_key)
            .order_by(
                (col(CareTeamRow.status) == "active").desc(), col(CareTeamRow.started_at).desc(), col(CareTeamRow.id)
            )
        )
        return self.session.execute(query).scalars().first()

    def for_team(self, team_org_id: str, status: str | None = None) -> list[CareTeamRow]:
        query = select(CareTeamRow).where(col(CareTeamRow.team_org_id) == team_org_id)
        if status:
            query = query.where(col(CareTeamRow.status) == status)
        return list(self.session.execute(query.order_by(col(CareTeamRow.started_at), col(CareTeamRow.id))).scalars())

    def participants(self, careteam_id: str) -> list[CareTeamParticipantRow]:
        query = (
            select(CareTeamParticipantRow)
            .where(col(CareTeamParticipantRow.careteam_id) == careteam_id)
            .order_by(col(CareTeamParticipantRow.id))
        )
        return list(self.session.execute(query).scalars())

    def current_referent(self, careteam_id: str) -> CareTeamParticipantRow | None:
        query = select(CareTeamParticipantRow).where(
            col(CareTeamParticipantRow.careteam_id) == careteam_id,
            col(CareTeamParticipantRow.role) == "referent",
            col(CareTeamParticipantRow.period_end).is_(None),
        )
        return self.session.execute(query).scalars().first()


class DacCaseRepository(Repository):
    def get(self, case_id: str) -> DacCase | None:
        return self.session.get(DacCase, case_id)

    def open_for_patient(self, patient_key: str) -> list[DacCase]:
        """The patient's open cases, oldest first (each covers the patient, or one hospital's stay)."""
        query = (
            select(DacCase)
            .where(col(DacCase.patient_key) == patient_key, col(DacCase.closed_at).is_(None))
            .order_by(col(DacCase.opened_at), col(DacCase.id))
        )
        return list(self.session.execute(query).scalars())

    def for_dac(self, dac_org_id: str, *, open_only: bool = False, limit: int = 500) -> list[DacCase]:
        query = select(DacCase).where(col(DacCase.dac_org_id) == dac_org_id)
        if open_only:
            query = query.where(col(DacCase.closed_at).is_(None))
        query = query.order_by(col(DacCase.opened_at).desc()).limit(limit)
        return list(self.session.execute(query).scalars())

    def open_dacs_for_patient(self, patient_key: str) -> frozenset[str]:
        query = select(col(DacCase.dac_org_id)).where(
            col(DacCase.patient_key) == patient_key, col(DacCase.closed_at).is_(None)
        )
        return frozenset(self.session.execute(query).scalars())


class TeamChangeRepository(Repository):
    def get(self, change_id: str) -> TeamChangeRow | None:
        return self.session.get(TeamChangeRow, change_id)

    def pending_for_patient(self, patient_key: str) -> list[TeamChangeRow]:
        query = (
            select(TeamChangeRow)
            .where(col(TeamChangeRow.patient_key) == patient_key, col(TeamChangeRow.status) == "requested")
            .order_by(col(TeamChangeRow.requested_at), col(TeamChangeRow.id))
        )
        return list(self.session.execute(query).scalars())

    def pending_by(self, patient_key: str, to_team_org_id: str) -> TeamChangeRow | None:
        query = select(TeamChangeRow).where(
            col(TeamChangeRow.patient_key) == patient_key,
            col(TeamChangeRow.to_team_org_id) == to_team_org_id,
            col(TeamChangeRow.status) == "requested",
        )
        return self.session.execute(query).scalars().first()

    def last_turned_down(self, patient_key: str, to_team_org_id: str, since: datetime) -> TeamChangeRow | None:
        """The team's latest request for the patient that was declined or withdrawn since `since`."""
        query = (
            select(TeamChangeRow)
            .where(
                col(TeamChangeRow.patient_key) == patient_key,
                col(TeamChangeRow.to_team_org_id) == to_team_org_id,
                col(TeamChangeRow.status).in_(("declined", "withdrawn")),
                col(TeamChangeRow.decided_at) > since,
            )
            .order_by(col(TeamChangeRow.decided_at).desc())
        )
        return self.session.execute(query).scalars().first()

    def pending_for_current_team(self, team_org_id: str) -> list[TeamChangeRow]:
        """Requests the team must answer: pending, about a patient it currently treats."""
        query = (
            select(TeamChangeRow)
            .join(CareTeamRow, col(CareTeamRow.patient_key) == col(TeamChangeRow.patient_key))
            .where(
                col(TeamChangeRow.status) == "requested",
                col(CareTeamRow.status) == "active",
                col(CareTeamRow.team_org_id) == team_org_id,
            )
            .order_by(col(TeamChangeRow.requested_at), col(TeamChangeRow.id))
        )
        return list(self.session.execute(query).scalars())

    def by_requester(self, team_org_id: str) -> list[TeamChangeRow]:
        query = (
            select(TeamChangeRow)
            .where(col(TeamChangeRow.to_team_org_id) == team_org_id)
            .order_by(col(TeamChangeRow.requested_at), col(TeamChangeRow.id))
        )
        return list(self.session.execute(query).scalars())

    def due(self, now: datetime, limit: int = 100) -> list[TeamChangeRow]:
        query = (
            select(TeamChangeRow)
            .where(col(TeamChangeRow.status) == "requested", col(TeamChangeRow.expires_at) <= now)
            .order_by(col(TeamChangeRow.expires_at), col(TeamChangeRow.id))
            .limit(limit)
        )
        return list(self.session.execute(query).scalars())


class ConsentRepository(Repository):
    def get(self, patient_key: str) -> ConsentRow | None:
        return self.session.get(ConsentRow, patient_key)


class TerritoryRepository(Repository):
    def get(self, postal_code: str) -> Territory | None:
        return self.session.get(Territory, postal_code)

    def listed(self, covered_by: str | None = None) -> list[Territory]:
        """Every mapped postal code, or those a CPTS or DAC covers."""
        query = select(Territory).order_by(col(Territory.postal_code))
        if covered_by is not None:
            query = query.where(
                (col(Territory.cpts_org_id) == covered_by) | (col(Territory.dac_org_id) == covered_by)
            )
        return list(self.session.execute(query).scalars())


class PatientRepository(Repository):
    def postal_code(self, patient_key: str) -> str | None:
        """The last known postal code (read from the table, not the session's identity map)."""
        return self.session.execute(
            select(col(PatientRow.postal_code)).where(col(PatientRow.patient_key) == patient_key)
        ).scalar_one_or_none()

    def record_postal_code(self, patient_key: str, postal_code: str, now: datetime) -> bool:
        """Store the last known postal code; True when it differs from the one known before.

        An upsert, so that two messages about the same patient at once never collide on the row.
        """
        if self.postal_code(patient_key) == postal_code:
            return False
        values = {"patient_key": patient_key, "postal_code": postal_code, "updated_at": now}
        changes = {"postal_code": postal_code, "updated_at": now}
        # Both dialects spell the upsert the same way, but their Insert classes differ.
        if self.session.get_bind().dialect.name == "postgresql":
            pg = postgresql.insert(_table(PatientRow)).values(**values)
            self.session.execute(pg.on_conflict_do_update(index_elements=["patient_key"], set_=changes))
        else:
            lite = sqlite.insert(_table(PatientRow)).values(**values)
            self.session.execute(lite.on_conflict_do_update(index_elements=["patient_key"], set_=changes))
        return True
