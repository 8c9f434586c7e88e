"""The one schema of a mirror table; each service gives it its own table name in its own database."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime
from sqlmodel import Field, SQLModel

# Wide enough for every time the producer writes (ISO 8601 with an offset) and every envelope id.
TIME_LENGTH = 40
MESSAGE_ID_LENGTH = 64


class _Snapshot(SQLModel):
    """Which snapshot the row holds, so a later one is compared with it (shared.mirrors.ordering)."""

    source_time: str | None = Field(default=None, max_length=TIME_LENGTH)  # the contract's `at`
    source_sent_at: str | None = Field(default=None, max_length=TIME_LENGTH)  # the envelope's time
    source_message_id: str | None = Field(default=None, max_length=MESSAGE_ID_LENGTH)
    updated_at: datetime = Field(sa_type=DateTime(timezone=True), nullable=False)


class CareTeamMirror(_Snapshot):
    """The last `careteam.changed` applied for a patient (docs/events.md): no patient identity, only its key."""

    patient_key: str = Field(primary_key=True, max_length=64)
    careteam_id: str | None = Field(default=None, max_length=64)
    team_org_id: str | None = Field(default=None, max_length=100)
    status: str = Field(max_length=20)
    referent: dict[str, Any] | None = Field(default=None, sa_type=JSON)
    consent_opposed: bool = False
    dac_case_open: bool = False
    dac_org_id: str | None = Field(default=None, max_length=100)
    # DAC cases a hospital opened for one stay: [{"hospital", "encounter", "dac_org_id"}].
    dac_stays: list[dict[str, Any]] | None = Field(default=None, sa_type=JSON)
    postal_code: str | None = Field(default=None, max_length=10)


class TerritoryMirror(_Snapshot):
    """The last `territory.changed` applied for a postal code: which CPTS (and DAC) covers it."""

    postal_code: str = Field(primary_key=True, max_length=10)
    cpts_org_id: str | None = Field(default=None, max_length=100, index=True)
    dac_org_id: str | None = Field(default=None, max_length=100)


@dataclass(frozen=True)
class MirrorTables:
    """A service's declaration: its two table classes (subclasses of the mixins above, with `table=True`)."""

    careteam: type[CareTeamMirror]
    territory: type[TerritoryMirror]
