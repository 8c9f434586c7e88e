"""A team's patient list (panel): who it declared, in which of its groups, and when an upload last confirmed it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Column, DateTime, delete, select
from sqlmodel import Field, SQLModel, col

from services.admissions.adapters.orm import CareTeamRow
from shared.db.repository import Repository


def _ts(nullable: bool = False, index: bool = False) -> Any:
    return Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=nullable, index=index))


class PanelMemberRow(SQLModel, table=True):
    __tablename__ = "admissions_panel_member"

    team_org_id: str = Field(primary_key=True, max_length=100)
    patient_key: str = Field(primary_key=True, max_length=64)
    group_id: str = Field(max_length=64, index=True)
    careteam_id: str = Field(max_length=36)
    confirmed_at: datetime = _ts(index=True)
    warned_at: datetime | None = _ts(nullable=True)


PANEL_TABLES = (SQLModel.metadata.tables[str(PanelMemberRow.__tablename__)],)


class PanelRepository(Repository):
    def get(self, team_org_id: str, patient_key: str) -> PanelMemberRow | None:
        return self.session.get(PanelMemberRow, (team_org_id, patient_key))

    def keys_of_group(self, team_org_id: str, group_id: str) -> list[str]:
        query = select(col(PanelMemberRow.patient_key)).where(
            col(PanelMemberRow.team_org_id) == team_org_id, col(PanelMemberRow.group_id) == group_id
        )
        return list(self.session.execute(query).scalars())

    def unconfirmed_since(self, before: datetime, limit: int) -> list[PanelMemberRow]:
        query = (
            select(PanelMemberRow)
            .where(col(PanelMemberRow.confirmed_at) < before)
            .order_by(col(PanelMemberRow.confirmed_at))
            .limit(limit)
        )
        return list(self.session.execute(query).scalars())

    def unwarned_since(self, before: datetime, limit: int) -> list[PanelMemberRow]:
        """Entries confirmed before `before` whose team has not been told they will age out."""
        query = (
            select(PanelMemberRow)
            .where(col(PanelMemberRow.confirmed_at) < before, col(PanelMemberRow.warned_at).is_(None))
            .order_by(col(PanelMemberRow.confirmed_at))
            .limit(limit)
        )
        return list(self.session.execute(query).scalars())

    def remove(self, team_org_id: str, patient_key: str) -> None:
        self.session.execute(
            delete(PanelMemberRow).where(
                col(PanelMemberRow.team_org_id) == team_org_id, col(PanelMemberRow.patient_key) == patient_key
            )
        )

    def own_careteams(self, team_org_id: str, patient_keys: list[str]) -> dict[str, CareTeamRow]:
        """The team's current enrolment of each patient: active, or proposed while a change of team waits."""
        query = select(CareTeamRow).where(
            col(CareTeamRow.patient_key).in_(patient_keys),
            col(CareTeamRow.team_org_id) == team_org_id,
            col(CareTeamRow.status).in_(("active", "proposed")),
        )
        return {row.patient_key: row for row in self.session.execute(query).scalars()}

    def listed(self, team_org_id: str, patient_keys: list[str]) -> dict[str, PanelMemberRow]:
        query = select(PanelMemberRow).where(
            col(PanelMemberRow.team_org_id) == team_org_id, col(PanelMemberRow.patient_key).in_(patient_keys)
        )
        return {row.patient_key: row for row in self.session.execute(query).scalars()}
