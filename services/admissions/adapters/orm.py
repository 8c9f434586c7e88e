"""Tables of the admissions service database: admissions, the care-team registry, DAC cases, consent, territory."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, DateTime, ForeignKey, Index, String, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from shared.db.tables import KERNEL_TABLES


def _ts(nullable: bool = False, index: bool = False) -> Any:
    return Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=nullable, index=index))


class AdmissionMessageRow(SQLModel, table=True):
    """Every message accepted on intake, with the answer given: a replay gets the same answer."""

    __tablename__ = "admissions_message"

    message_id: str = Field(primary_key=True, max_length=64)
    fingerprint: str = Field(max_length=64)
    event_type: str = Field(max_length=50)
    hospital_org_id: str = Field(max_length=100)
    admission_id: str = Field(max_length=36, index=True)
    response: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    received_at: datetime = _ts()


class Admission(SQLModel, table=True):
    __tablename__ = "admissions_admission"
    __table_args__ = (UniqueConstraint("hospital_org_id", "encounter_key", name="uq_admissions_encounter"),)

    id: str = Field(primary_key=True, max_length=36)
    message_id: str = Field(max_length=64, unique=True)  # the original admission message
    fingerprint: str = Field(max_length=64)
    hospital_org_id: str = Field(max_length=100)
    encounter_key: str = Field(max_length=300)
    patient_key: str = Field(max_length=64, index=True)
    status: str = Field(max_length=20)
    encounter_class: str = Field(max_length=20)
    started_at: str = Field(max_length=40)
    postal_code: str | None = Field(default=None, max_length=10)
    response: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    # Who was told of the original: corrections and cancellations go to them, nobody else.
    recipients: list[dict[str, Any]] = Field(sa_column=Column(JSON, nullable=False))
    recorded_at: datetime = _ts()
    updated_at: datetime = _ts()


class CareTeamRow(SQLModel, table=True):
    """A patient's treating team (ANS "Cercle de soins" CareTeam); at most one active per patient."""

    __tablename__ = "admissions_careteam"
    __table_args__ = (
        Index(
            "uq_admissions_careteam_active_patient",
            "patient_key",
            unique=True,
            postgresql_where=text("status = 'active'"),
            sqlite_where=text("status = 'active'"),
        ),
    )

    id: str = Field(primary_key=True, max_length=36)
    patient_key: str = Field(max_length=64, index=True)
    # The identifier the team gave: it is the team's own data, echoed back on read.
    subject_system: str = Field(max_length=200)
    subject_value: str = Field(max_length=100)
    team_org_id: str = Field(max_length=100, index=True)
    name: str | None = Field(default=None, max_length=200)
    status: str = Field(max_length=20)
    started_at: datetime = _ts()
    ended_at: datetime | None = _ts(nullable=True)
    version: int = Field(default=1)


class CareTeamParticipantRow(SQLModel, table=True):
    __tablename__ = "admissions_careteam_participant"

    id: int | None = Field(default=None, primary_key=True)
    careteam_id: str = Field(
        sa_column=Column(String(36), ForeignKey("admissions_careteam.id"), nullable=False, index=True)
    )
    role: str = Field(max_length=50)
    member_system: str = Field(max_length=200)
    member_value: str = Field(max_length=100)
    member_display: str | None = Field(default=None, max_length=200)
    # How to reach the member ([{"system": "phone", "value": ...}]), from the CareTeam's contained resource.
    telecom: list[dict[str, Any]] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    period_start: datetime = _ts()
    period_end: datetime | None = _ts(nullable=True)


class DacCase(SQLModel, table=True):
    __tablename__ = "admissions_dac_case"
    __table_args__ = (
        Index(
            "uq_admissions_dac_case_open",
            "patient_key",
            "dac_org_id",
            unique=True,
            postgresql_where=text("closed_at IS NULL"),
            sqlite_where=text("closed_at IS NULL"),
        ),
    )

    id: str = Field(primary_key=True, max_length=36)
    patient_key: str = Field(max_length=64, index=True)
    dac_org_id: str = Field(max_length=100)
    # The treating team or hospital whose referral opened the case (a DAC never opens one on its own).
    referred_by: str | None = Field(default=None, max_length=100)
    # "team": the case covers the patient; "hospital": only that hospital's stay named by encounter_key.
    referrer_role: str | None = Field(default=None, max_length=20)
    encounter_key: str | None = Field(default=None, max_length=300)
    opened_at: datetime = _ts()
    closed_at: datetime | None = _ts(nullable=True)


class TeamChangeRow(SQLModel, table=True):
    """A team asks to become a patient's treating team while another one is: the current team answers, or the
    request expires to the new team. `careteam_id` is the new team's CareTeam, `proposed` until then."""

    __tablename__ = "admissions_team_change"

    id: str = Field(primary_key=True, max_length=36)
    patient_key: str = Field(max_length=64, index=True)
    careteam_id: str = Field(max_length=36)
    to_team_org_id: str = Field(max_length=100, index=True)
    status: str = Field(max_length=20, index=True)  # requested | accepted | declined | expired | superseded
    requested_at: datetime = _ts()
    expires_at: datetime = _ts(index=True)
    decided_at: datetime | None = _ts(nullable=True)
    decided_by: str | None = Field(default=None, max_length=100)


class ConsentRow(SQLModel, table=True):
    """The patient's latest word on sharing beyond the care team, and who may lift a standing opposition."""

    __tablename__ = "admissions_consent"

    patient_key: str = Field(primary_key=True, max_length=64)
    opposed: bool
    recorded_by: str = Field(max_length=100)
    recorded_at: datetime = _ts()
    # The standing (or last) opposition: who recorded it, the treating team of that moment, when.
    opposed_by: str | None = Field(default=None, max_length=100)
    opposed_team: str | None = Field(default=None, max_length=100)
    opposed_at: datetime | None = _ts(nullable=True)
    # Who lifted the last opposition, and when (the patient's answer to "who changed my choice?").
    lifted_by: str | None = Field(default=None, max_length=100)
    lifted_at: datetime | None = _ts(nullable=True)


class PatientRow(SQLModel, table=True):
    """What admissions last learnt of where the patient lives (admission Patient.address, CareTeam)."""

    __tablename__ = "admissions_patient"

    patient_key: str = Field(primary_key=True, max_length=64)
    postal_code: str | None = Field(default=None, max_length=10)
    updated_at: datetime = _ts()


class Territory(SQLModel, table=True):
    """Which CPTS and DAC cover a postal code."""

    __tablename__ = "admissions_territory"

    postal_code: str = Field(primary_key=True, max_length=10)
    cpts_org_id: str | None = Field(default=None, max_length=100)
    dac_org_id: str | None = Field(default=None, max_length=100)
    updated_at: datetime = _ts()


TABLES = (
    *KERNEL_TABLES,
    *(
        SQLModel.metadata.tables[str(model.__tablename__)]
        for model in (
            AdmissionMessageRow,
            Admission,
            CareTeamRow,
            CareTeamParticipantRow,
            DacCase,
            TeamChangeRow,
            ConsentRow,
            PatientRow,
            Territory,
        )
    ),
)
