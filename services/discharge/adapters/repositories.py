"""Queries of the discharge service; they add and read, only the unit of work commits."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, func, select, update
from sqlmodel import col

from services.discharge.adapters.orm import (
    DischargeMessageRow,
    DischargeRow,
    FollowupRow,
    HandoffRow,
    OrientationRow,
    TimerRow,
)
from shared.db.engine import is_postgres
from shared.db.repository import Repository


class MessageRepository(Repository):
    def get(self, message_id: str) -> DischargeMessageRow | None:
        return self.session.get(DischargeMessageRow, message_id)


class DischargeRepository(Repository):
    def get(self, discharge_id: str) -> DischargeRow | None:
        return self.session.get(DischargeRow, discharge_id)

    def require(self, discharge_id: str) -> DischargeRow:
        """The discharge a handoff or follow-up item belongs to; its absence is broken data, not a 404."""
        row = self.get(discharge_id)
        if row is None:
            raise LookupError(f"discharge {discharge_id} is missing")
        return row

    def by_encounter(self, hospital_org_id: str, encounter_key: str) -> DischargeRow | None:
        query = select(DischargeRow).where(
            col(DischargeRow.hospital_org_id) == hospital_org_id, col(DischargeRow.encounter_key) == encounter_key
        )
        return self.session.execute(query).scalars().first()

    def without_team_since(self, patient_key: str, since: datetime) -> list[DischargeRow]:
        """The patient's discharges recorded since `since` that reached no treating team, oldest first."""
        query = (
            select(DischargeRow)
            .where(
                col(DischargeRow.patient_key) == patient_key,
                col(DischargeRow.team_org_id).is_(None),
                col(DischargeRow.recorded_at) >= since,
            )
            .order_by(col(DischargeRow.recorded_at))
        )
        return list(self.session.execute(query).scalars())

    def discharge_times(self, patient_key: str, exclude_id: str | None = None) -> list[datetime]:
        """When the patient left hospital before (cancelled discharges never happened)."""
        query = select(col(DischargeRow.discharged_at)).where(
            col(DischargeRow.patient_key) == patient_key, col(DischargeRow.status) != "cancelled"
        )
        if exclude_id:
            query = query.where(col(DischargeRow.id) != exclude_id)
        return [row[0] for row in self.session.execute(query).all()]


class HandoffRepository(Repository):
    def get(self, task_id: str, *, for_update: bool = False) -> HandoffRow | None:
        query = select(HandoffRow).where(col(HandoffRow.id) == task_id)
        if for_update and is_postgres(self.session.get_bind()):
            query = query.with_for_update()
        return self.session.execute(query).scalars().first()

    def for_discharge(self, discharge_id: str) -> list[HandoffRow]:
        query = (
            select(HandoffRow)
            .where(col(HandoffRow.discharge_id) == discharge_id)
            .order_by(col(HandoffRow.requested_at))
        )
        return list(self.session.execute(query).scalars())


class OrientationRepository(Repository):
    def get(self, task_id: str, *, for_update: bool = False) -> OrientationRow | None:
        query = select(OrientationRow).where(col(OrientationRow.id) == task_id)
        if for_update and is_postgres(self.session.get_bind()):
            query = query.with_for_update()
        return self.session.execute(query).scalars().first()

    def for_discharge(self, discharge_id: str) -> OrientationRow | None:
        query = select(OrientationRow).where(col(OrientationRow.discharge_id) == discharge_id)
        return self.session.execute(query).scalars().first()


class FollowupRepository(Repository):
    def get(self, task_id: str, *, for_update: bool = False) -> FollowupRow | None:
        query = select(FollowupRow).where(col(FollowupRow.id) == task_id)
        if for_update and is_postgres(self.session.get_bind()):
            query = query.with_for_update()
        return self.session.execute(query).scalars().first()

    def for_discharge(self, discharge_id: str) -> list[FollowupRow]:
        query = (
            select(FollowupRow).where(col(FollowupRow.discharge_id) == discharge_id).order_by(col(FollowupRow.due_at))
        )
        return list(self.session.execute(query).scalars())


class TimerRepository(Repository):
    def get(self, timer_id: str) -> TimerRow | None:
        return self.session.get(TimerRow, timer_id)

    def next_due(self, now: datetime) -> TimerRow | None:
        """The earliest unfired timer due by `now`; on Postgres a row another replica holds is skipped."""
        query = (
            select(TimerRow)
            .where(col(TimerRow.fired_at).is_(None), col(TimerRow.due_at) <= now)
            .order_by(col(TimerRow.due_at), col(TimerRow.id))
            .limit(1)
        )
        if is_postgres(self.session.get_bind()):
            query = query.with_for_update(skip_locked=True)
        return self.session.execute(query).scalars().first()

    def claim(self, timer_id: str, now: datetime, worker: str, outcome: str = "fired") -> bool:
        """Mark the timer fired unless someone did already; True only for the one caller that did."""
        result = cast(
            CursorResult[Any],
            self.session.execute(
                update(TimerRow)
                .where(col(TimerRow.id) == timer_id, col(TimerRow.fired_at).is_(None))
                .values(fired_at=now, fired_by=worker, outcome=outcome)
            ),
        )
        return result.rowcount == 1

    def set_outcome(self, timer_id: str, outcome: str) -> None:
        self.session.execute(update(TimerRow).where(col(TimerRow.id) == timer_id).values(outcome=outcome))

    def cancel_for(self, subject_id: str, now: datetime, outcome: str = "cancelled") -> int:
        result = cast(
            CursorResult[Any],
            self.session.execute(
                update(TimerRow)
                .where(col(TimerRow.subject_id) == subject_id, col(TimerRow.fired_at).is_(None))
                .values(fired_at=now, fired_by="cancel", outcome=outcome)
            ),
        )
        return result.rowcount

    def for_subject(self, subject_id: str) -> list[TimerRow]:
        query = select(TimerRow).where(col(TimerRow.subject_id) == subject_id).order_by(col(TimerRow.level))
        return list(self.session.execute(query).scalars())

    def pending_count(self) -> int:
        # Counted by the database, not by loading every pending row.
        query = select(func.count()).select_from(TimerRow).where(col(TimerRow.fired_at).is_(None))
        return int(self.session.execute(query).scalar_one())
