"""Tables of the discharge service database: discharges, handoff tasks, follow-up items, durable timers,
and the mirror of the care-team registry (fed by `relais.careteam`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, DateTime, Index, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from shared.db.tables import KERNEL_TABLES
from shared.retention import PurgeRule, table_of


def _ts(nullable: bool = False, index: bool = False) -> Any:
    return Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=nullable, index=index))


class DischargeMessageRow(SQLModel, table=True):
    """Every message accepted on intake, with the answer given: a replay gets the same answer."""

    __tablename__ = "discharge_message"

    message_id: str = Field(primary_key=True, max_length=64)
    fingerprint: str = Field(max_length=64)
    event_type: str = Field(max_length=50)
    hospital_org_id: str = Field(max_length=100)
    discharge_id: str = Field(max_length=36, index=True)
    response: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    received_at: datetime = _ts()


class DischargeRow(SQLModel, table=True):
    __tablename__ = "discharge_discharge"
    __table_args__ = (UniqueConstraint("hospital_org_id", "encounter_key", name="uq_discharge_encounter"),)

    id: str = Field(primary_key=True, max_length=36)
    message_id: str = Field(max_length=64, unique=True)
    hospital_org_id: str = Field(max_length=100)
    encounter_key: str = Field(max_length=300)
    patient_key: str = Field(max_length=64, index=True)
    patient_system: str = Field(max_length=100)
    patient_value: str = Field(max_length=40)
    status: str = Field(max_length=20)
    started_at: datetime | None = _ts(nullable=True)
    discharged_at: datetime = _ts(index=True)
    postal_code: str | None = Field(default=None, max_length=10)
    commune: str | None = Field(default=None, max_length=100)
    birth_date: str | None = Field(default=None, max_length=10)
    flags: list[str] = Field(sa_column=Column(JSON, nullable=False))
    complex_case: bool = False
    readmission: bool = False
    team_org_id: str | None = Field(default=None, max_length=100)
    # The FHIR the team is entitled to (full detail), kept to answer corrections and reads.
    payload: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    # Who was told of the original: corrections and cancellations go to them, nobody else.
    recipients: list[dict[str, Any]] = Field(sa_column=Column(JSON, nullable=False))
    recorded_at: datetime = _ts()
    updated_at: datetime = _ts()


class HandoffRow(SQLModel, table=True):
    """The hospital-to-team handoff, served as a FHIR Task."""

    __tablename__ = "discharge_handoff"

    id: str = Field(primary_key=True, max_length=36)
    discharge_id: str = Field(max_length=36, index=True)
    patient_key: str = Field(max_length=64, index=True)
    hospital_org_id: str = Field(max_length=100, index=True)
    team_org_id: str = Field(max_length=100, index=True)
    status: str = Field(max_length=20)
    business_status: str | None = Field(default=None, max_length=50)
    reason: str | None = Field(default=None, max_length=1000)
    hospital_referent: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    team_referent: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    requested_at: datetime = _ts()
    expires_at: datetime = _ts()
    decided_at: datetime | None = _ts(nullable=True)
    updated_at: datetime = _ts()
    # Set when the CPTS proposed this team: the team decides on minimised facts until it accepts.
    orientation_id: str | None = Field(default=None, max_length=36, index=True)


class OrientationRow(SQLModel, table=True):
    """The CPTS's orientation Task: find a treating team for a discharged patient who has none (or lost it)."""

    __tablename__ = "discharge_orientation"

    id: str = Field(primary_key=True, max_length=36)
    # One orientation per discharge: a second handoff failure returns the same one.
    discharge_id: str = Field(max_length=36, unique=True)
    patient_key: str = Field(max_length=64, index=True)
    hospital_org_id: str = Field(max_length=100)
    cpts_org_id: str = Field(max_length=100, index=True)
    status: str = Field(max_length=20)
    reason: str = Field(max_length=30)  # coded: no-team | handoff-declined | handoff-expired
    team_org_id: str | None = Field(default=None, max_length=100)  # the team proposed (or that accepted)
    handoff_id: str | None = Field(default=None, max_length=36)  # the current proposal
    attempts: int = 0
    requested_at: datetime = _ts()
    updated_at: datetime = _ts(index=True)


class FollowupRow(SQLModel, table=True):
    """One item of the follow-up plan (e.g. GP visit within 7 days), served as a FHIR Task."""

    __tablename__ = "discharge_followup"

    id: str = Field(primary_key=True, max_length=36)
    discharge_id: str = Field(max_length=36, index=True)
    handoff_id: str | None = Field(default=None, max_length=36)
    patient_key: str = Field(max_length=64, index=True)
    hospital_org_id: str = Field(max_length=100)
    team_org_id: str | None = Field(default=None, max_length=100, index=True)
    code: str = Field(max_length=100)
    display: str = Field(max_length=300)
    status: str = Field(max_length=20)
    due_at: datetime = _ts()
    completed_at: datetime | None = _ts(nullable=True)
    escalation_level: int | None = Field(default=None)  # highest level escalated so far
    updated_at: datetime = _ts()


class TimerRow(SQLModel, table=True):
    """A durable deadline. Firing = setting `fired_at` in the same transaction as the effects, once."""

    __tablename__ = "discharge_timer"
    __table_args__ = (
        UniqueConstraint("kind", "subject_id", "level", name="uq_discharge_timer"),
        # The worker only ever scans unfired timers by due time: keep that index small.
        Index(
            "ix_discharge_timer_pending",
            "due_at",
            postgresql_where=text("fired_at IS NULL"),
            sqlite_where=text("fired_at IS NULL"),
        ),
    )

    id: str = Field(primary_key=True, max_length=36)
    kind: str = Field(max_length=30)
    subject_id: str = Field(max_length=36)
    level: int = 0
    due_at: datetime = _ts()
    fired_at: datetime | None = _ts(nullable=True)
    outcome: str | None = Field(default=None, max_length=30)  # fired | obsolete | cancelled
    fired_by: str | None = Field(default=None, max_length=100)


class CareTeamMirrorRow(SQLModel, table=True):
    """The last `careteam.changed` seen for a patient (docs/events.md)."""

    __tablename__ = "discharge_careteam_mirror"

    patient_key: str = Field(primary_key=True, max_length=64)
    careteam_id: str | None = Field(default=None, max_length=36)
    team_org_id: str | None = Field(default=None, max_length=100)
    status: str = Field(max_length=20)
    referent: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    consent_opposed: bool = False
    dac_case_open: bool = False
    dac_org_id: str | None = Field(default=None, max_length=100)
    # DAC cases a hospital opened for one stay: [{"hospital", "encounter", "dac_org_id"}].
    dac_stays: list[dict[str, Any]] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    postal_code: str | None = Field(default=None, max_length=10)
    source_time: str | None = Field(default=None, max_length=40)
    updated_at: datetime = _ts()


class TerritoryMirrorRow(SQLModel, table=True):
    __tablename__ = "discharge_territory_mirror"

    postal_code: str = Field(primary_key=True, max_length=10)
    cpts_org_id: str | None = Field(default=None, max_length=100)
    dac_org_id: str | None = Field(default=None, max_length=100)
    updated_at: datetime = _ts()


TABLES = (
    *KERNEL_TABLES,
    *(
        SQLModel.metadata.tables[model.__tablename__]
        for model in (
            DischargeMessageRow,
            DischargeRow,
            HandoffRow,
            OrientationRow,
            FollowupRow,
            TimerRow,
            CareTeamMirrorRow,
            TerritoryMirrorRow,
        )
    ),
)


def retention_rules(settings: Any) -> list[PurgeRule]:
    """Service rules beside the kernel's (docs/security.md, Retention): timers that have fired or were set aside."""
    timers = table_of(TimerRow)
    return [
        PurgeRule("discharge_timer", timers, "fired_at", settings.retention_timers_days,
                  lambda t: t.c.fired_at.is_not(None)),
    ]
