"""Tables of the snp service database: effecteurs' schedules and slots, SAS requests, appointments,
the care-team and territory mirrors, and the minimised facts the CPTS dashboard reads."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Column, Index, Text, text
from sqlmodel import Field, SQLModel

from shared.db.tables import KERNEL_TABLES, UtcDateTime
from shared.mirrors import CareTeamMirror, MirrorTables, TerritoryMirror


def _ts(nullable: bool = False) -> Any:
    return Field(default=None, sa_column=Column(UtcDateTime(), nullable=nullable))


class ScheduleRow(SQLModel, table=True):
    """An effecteur's SNP agenda (FHIR Schedule); its commune places its slots in a territory."""

    __tablename__ = "snp_schedule"

    id: str = Field(primary_key=True, max_length=36)
    org_id: str = Field(max_length=100, index=True)
    client_id: str = Field(max_length=64)
    commune: str = Field(max_length=5)
    # The postal code of the actor's Location (SAS searches by it); the commune's first one otherwise.
    postal_code: str | None = Field(default=None, max_length=10, index=True)
    territory: str = Field(max_length=40)
    updated_at: datetime = _ts()


class ScheduleActorRow(SQLModel, table=True):
    """A Schedule's actor (Practitioner, PractitionerRole or Location) as the effecteur published it."""

    __tablename__ = "snp_schedule_actor"
    __table_args__ = (Index("ix_snp_schedule_actor_kind_identifier", "kind", "identifier"),)

    id: str = Field(primary_key=True, max_length=36)
    schedule_id: str = Field(max_length=36, index=True)
    org_id: str = Field(max_length=100)
    kind: str = Field(max_length=20)  # Practitioner | PractitionerRole | Location
    identifier: str | None = Field(default=None, max_length=300)  # "system|value", the search key
    resource: str = Field(sa_column=Column(Text, nullable=False))  # JSON Relais serves back (no narrative)


class SlotRow(SQLModel, table=True):
    """A free SNP slot; placement claims it with a conditional UPDATE free -> busy."""

    __tablename__ = "snp_slot"
    __table_args__ = (
        # Pool placement: free slots of one territory, earliest first, read with LIMIT.
        Index("ix_snp_slot_status_territory_start", "status", "territory", "start"),
        # Own-team placement: the free slots of one organisation, earliest first.
        Index("ix_snp_slot_org_status_start", "org_id", "status", "start"),
        # SAS search: free slots in a time window, earliest first.
        Index("ix_snp_slot_status_start", "status", "start"),
    )

    id: str = Field(primary_key=True, max_length=36)
    schedule_id: str = Field(max_length=36, index=True)
    org_id: str = Field(max_length=100)
    client_id: str = Field(max_length=64)
    commune: str = Field(max_length=5)
    territory: str = Field(max_length=40)
    status: str = Field(max_length=20)  # free | busy | withdrawn
    # TRE_R314 slot types, comma-framed (",PUBLIC,SNP,") so one LIKE finds a type; codes of serviceType and
    # specialty likewise; `detail` keeps the coded elements Relais serves back (JSON, no free text).
    types: str = Field(default=",SNP,", max_length=60)
    service_types: str = Field(default="", max_length=300)
    specialties: str = Field(default="", max_length=300)
    detail: str = Field(default="{}", sa_column=Column(Text, nullable=False, server_default="{}"))
    start: datetime = _ts()
    end: datetime = _ts()
    updated_at: datetime = _ts()


class RequestRow(SQLModel, table=True):
    """A SAS request (FHIR ServiceRequest). The patient identifier stays here, for the effecteur."""

    __tablename__ = "snp_request"
    __table_args__ = (
        Index("uq_snp_request_identifier", "sas_org_id", "identifier", unique=True),
        # The expiry worker and the retry loop scan waiting requests by deadline.
        Index("ix_snp_request_state_deadline", "state", "deadline_at"),
    )

    id: str = Field(primary_key=True, max_length=36)
    sas_org_id: str = Field(max_length=100)
    identifier: str = Field(max_length=100)
    patient_key: str = Field(max_length=64, index=True)
    patient_system: str = Field(max_length=200)
    patient_value: str = Field(max_length=100)
    commune: str = Field(max_length=5)
    territory: str = Field(max_length=40)
    urgency: str = Field(max_length=20)
    reason: str = Field(max_length=40)
    state: str = Field(max_length=20)
    requested_at: datetime = _ts()
    deadline_at: datetime = _ts()
    expired_at: datetime | None = _ts(nullable=True)


class AppointmentRow(SQLModel, table=True):
    __tablename__ = "snp_appointment"
    __table_args__ = (
        # Two live appointments can never hold one slot, whatever the code above does.
        Index(
            "uq_snp_appointment_live_slot",
            "slot_id",
            unique=True,
            postgresql_where=text("status <> 'cancelled'"),
            sqlite_where=text("status <> 'cancelled'"),
        ),
        Index("ix_snp_appointment_org_status", "org_id", "status"),
    )

    id: str = Field(primary_key=True, max_length=36)
    request_id: str = Field(max_length=36, index=True)
    slot_id: str = Field(max_length=36)
    org_id: str = Field(max_length=100)
    via: str = Field(max_length=20)
    status: str = Field(max_length=20)
    start: datetime = _ts()
    end: datetime = _ts()
    created_at: datetime = _ts()
    updated_at: datetime = _ts()


class CareTeamMirrorRow(CareTeamMirror, table=True):
    __tablename__ = "snp_careteam"


class TerritoryMirrorRow(TerritoryMirror, table=True):
    __tablename__ = "snp_territory"


MIRRORS = MirrorTables(careteam=CareTeamMirrorRow, territory=TerritoryMirrorRow)


class FactRow(SQLModel, table=True):
    """The dashboard's only source: one row per request, no patient identity, no free text."""

    __tablename__ = "snp_fact"
    __table_args__ = (Index("ix_snp_fact_territory_requested", "territory", "requested_at"),)

    request_id: str = Field(primary_key=True, max_length=36)
    territory: str = Field(max_length=40)
    commune: str = Field(max_length=5)
    urgency: str = Field(max_length=20)
    reason: str = Field(max_length=40)
    state: str = Field(max_length=20)
    requested_at: datetime = _ts()
    deadline_at: datetime = _ts()
    appointment_start: datetime | None = _ts(nullable=True)
    appointment_status: str | None = Field(default=None, max_length=20)
    effecteur_org_id: str | None = Field(default=None, max_length=100)


TABLES = (
    *KERNEL_TABLES,
    *(
        SQLModel.metadata.tables[model.__tablename__]
        for model in (
            ScheduleRow,
            ScheduleActorRow,
            SlotRow,
            RequestRow,
            AppointmentRow,
            CareTeamMirrorRow,
            TerritoryMirrorRow,
            FactRow,
        )
    ),
)
