"""Queries of the snp service; they add and read, only the unit of work commits."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, Result, delete, func, or_, select, update
from sqlmodel import col

from services.snp.adapters.orm import (
    AppointmentRow,
    FactRow,
    RequestRow,
    ScheduleActorRow,
    ScheduleRow,
    SlotRow,
)
from services.snp.domain import AppointmentStatus, RequestState, SlotCandidate, SlotSearch
from shared.db.repository import Repository

FREE, BUSY, WITHDRAWN = "free", "busy", "withdrawn"
# How many earliest slots a placement reads: the ranking needs the head of the queue, never the whole pool.
CANDIDATES = 50
# Slots sharing the boundary start time are all read (up to this cap) so distance and load can break the tie.
TIE_CAP = 500
# Placement answers the SAS regulator's requests: only slots the effecteur opened to them (TRE_R314 SNP).
SNP_TYPE = "%,SNP,%"
LIVE_APPOINTMENT = (AppointmentStatus.PENDING.value, AppointmentStatus.BOOKED.value)


def _rowcount(result: Result[Any]) -> int:
    # An UPDATE's result is a CursorResult, which alone knows how many rows matched.
    return cast("CursorResult[Any]", result).rowcount


def _candidate(row: SlotRow) -> SlotCandidate:
    return SlotCandidate(row.id, row.org_id, row.commune, row.start)


class ScheduleRepository(Repository):
    def get(self, schedule_id: str) -> ScheduleRow | None:
        return self.session.get(ScheduleRow, schedule_id)

    def set_territory(self, postal_code: str, territory: str) -> None:
        """The territory of every schedule at this postal code, and of its slots still free."""
        located = select(col(ScheduleRow.id)).where(col(ScheduleRow.postal_code) == postal_code)
        self.session.execute(
            update(ScheduleRow)
            .where(col(ScheduleRow.postal_code) == postal_code)
            .values(territory=territory)
            .execution_options(synchronize_session=False)
        )
        self.session.execute(
            update(SlotRow)
            .where(col(SlotRow.schedule_id).in_(located), col(SlotRow.status) == FREE)
            .values(territory=territory)
            .execution_options(synchronize_session=False)
        )

    def replace_actors(self, schedule_id: str, actors: list[ScheduleActorRow]) -> None:
        """A re-published Schedule names its actors afresh."""
        self.session.execute(delete(ScheduleActorRow).where(col(ScheduleActorRow.schedule_id) == schedule_id))
        for actor in {a.id: a for a in actors}.values():
            self.session.add(actor)

    def many(self, schedule_ids: Iterable[str]) -> list[ScheduleRow]:
        ids = sorted(set(schedule_ids))
        if not ids:
            return []
        return list(self.session.execute(select(ScheduleRow).where(col(ScheduleRow.id).in_(ids))).scalars())

    def actors_of(self, schedule_ids: Iterable[str]) -> list[ScheduleActorRow]:
        ids = sorted(set(schedule_ids))
        if not ids:
            return []
        query = select(ScheduleActorRow).where(col(ScheduleActorRow.schedule_id).in_(ids))
        return list(self.session.execute(query.order_by(col(ScheduleActorRow.id))).scalars())


def _any_code(column: Any, codes: tuple[str, ...]) -> Any:
    return or_(*(col(column).like(f"%,{code},%") for code in codes))


class SlotRepository(Repository):
    def get(self, slot_id: str) -> SlotRow | None:
        return self.session.get(SlotRow, slot_id)

    def _search(self, criteria: SlotSearch) -> Any:
        query = select(SlotRow)
        if criteria.start_ge is not None:
            query = query.where(col(SlotRow.start) >= criteria.start_ge)
        if criteria.start_le is not None:
            query = query.where(col(SlotRow.start) <= criteria.start_le)
        if criteria.status:
            query = query.where(col(SlotRow.status).in_(criteria.status))
        for kind, keys in (("Practitioner", criteria.practitioners), ("PractitionerRole", criteria.roles)):
            if keys:
                schedules = select(col(ScheduleActorRow.schedule_id)).where(
                    col(ScheduleActorRow.kind) == kind, col(ScheduleActorRow.identifier).in_(keys)
                )
                query = query.where(col(SlotRow.schedule_id).in_(schedules))
        if criteria.postal_codes:
            located = select(col(ScheduleRow.id)).where(col(ScheduleRow.postal_code).in_(criteria.postal_codes))
            query = query.where(col(SlotRow.schedule_id).in_(located))
        for column, codes in (
            (SlotRow.types, criteria.types),
            (SlotRow.service_types, criteria.service_types),
            (SlotRow.specialties, criteria.specialties),
        ):
            if codes:
                query = query.where(_any_code(column, codes))
        return query

    def search(self, criteria: SlotSearch, offset: int, limit: int) -> tuple[int, list[SlotRow]]:
        """One page of matching slots, earliest first, and how many match in all."""
        query = self._search(criteria)
        total = self.session.execute(select(func.count()).select_from(query.subquery())).scalar_one()
        page = query.order_by(col(SlotRow.start), col(SlotRow.id)).offset(offset).limit(limit)
        return total, list(self.session.execute(page).scalars())

    def free_of_org(
        self, org_id: str, now: datetime, deadline: datetime, limit: int = 5
    ) -> list[SlotCandidate]:
        query = (
            select(SlotRow)
            .where(
                col(SlotRow.org_id) == org_id,
                col(SlotRow.status) == FREE,
                col(SlotRow.types).like(SNP_TYPE),
                col(SlotRow.start) >= now,
                col(SlotRow.start) <= deadline,
            )
            .order_by(col(SlotRow.start))
            .limit(limit)
        )
        return [_candidate(row) for row in self.session.execute(query).scalars()]

    def earliest_free_in_territory(
        self, territory: str, now: datetime, deadline: datetime, limit: int = CANDIDATES
    ) -> list[SlotCandidate]:
        """The head of the territory's free-slot queue (index: status, territory, start), read with LIMIT."""
        base = select(SlotRow).where(
            col(SlotRow.status) == FREE,
            col(SlotRow.types).like(SNP_TYPE),
            col(SlotRow.territory) == territory,
            col(SlotRow.start) >= now,
            col(SlotRow.start) <= deadline,
        )
        rows = list(self.session.execute(base.order_by(col(SlotRow.start)).limit(limit)).scalars())
        # Only the earliest start time competes on distance and load; the rest are fallbacks for lost
        # races. If the whole head shares that start, read every slot at it so the tie is broken fairly.
        if len(rows) == limit and rows[0].start == rows[-1].start:
            seen = {row.id for row in rows}
            ties = self.session.execute(base.where(col(SlotRow.start) == rows[0].start).limit(TIE_CAP)).scalars()
            rows.extend(row for row in ties if row.id not in seen)
        return [_candidate(row) for row in rows]

    def free_of_practitioner(self, practitioner: str | None, start: datetime | None) -> str | None:
        """The free slot starting at `start` in a Schedule whose Practitioner actor has this identifier."""
        if not practitioner or start is None:
            return None
        schedules = select(col(ScheduleActorRow.schedule_id)).where(
            col(ScheduleActorRow.kind) == "Practitioner", col(ScheduleActorRow.identifier) == practitioner
        )
        query = select(col(SlotRow.id)).where(
            col(SlotRow.schedule_id).in_(schedules), col(SlotRow.status) == FREE, col(SlotRow.start) == start
        )
        return self.session.execute(query.order_by(col(SlotRow.id)).limit(1)).scalars().first()

    def claim(self, slot_id: str, now: datetime) -> bool:
        """free -> busy, only if still free: of two concurrent placements exactly one sees rowcount 1."""
        result = self.session.execute(
            update(SlotRow)
            .where(col(SlotRow.id) == slot_id, col(SlotRow.status) == FREE)
            .values(status=BUSY, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        return _rowcount(result) == 1

    def release(self, slot_id: str, now: datetime) -> None:
        self.session.execute(
            update(SlotRow)
            .where(col(SlotRow.id) == slot_id, col(SlotRow.status) == BUSY, col(SlotRow.start) > now)
            .values(status=FREE, updated_at=now)
            .execution_options(synchronize_session=False)
        )

    def withdraw(self, slot_id: str, org_id: str, now: datetime) -> bool:
        result = self.session.execute(
            update(SlotRow)
            .where(col(SlotRow.id) == slot_id, col(SlotRow.org_id) == org_id, col(SlotRow.status) == FREE)
            .values(status=WITHDRAWN, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        return _rowcount(result) == 1


class RequestRepository(Repository):
    def get(self, request_id: str) -> RequestRow | None:
        return self.session.get(RequestRow, request_id)

    def by_identifier(self, sas_org_id: str, identifier: str) -> RequestRow | None:
        query = select(RequestRow).where(
            col(RequestRow.sas_org_id) == sas_org_id, col(RequestRow.identifier) == identifier
        )
        return self.session.execute(query).scalars().first()

    def waiting(
        self, *, due_before: datetime | None = None, open_after: datetime | None = None, limit: int = 100
    ) -> list[RequestRow]:
        query = select(RequestRow).where(col(RequestRow.state) == RequestState.WAITING.value)
        if due_before is not None:
            query = query.where(col(RequestRow.deadline_at) <= due_before)
        if open_after is not None:
            query = query.where(col(RequestRow.deadline_at) > open_after)
        return list(self.session.execute(query.order_by(col(RequestRow.deadline_at)).limit(limit)).scalars())

    def move(self, request_id: str, source: RequestState, target: RequestState, **values: object) -> bool:
        """Conditional state change: the claim that makes expiry (and placement) happen once."""
        result = self.session.execute(
            update(RequestRow)
            .where(col(RequestRow.id) == request_id, col(RequestRow.state) == source.value)
            .values(state=target.value, **values)
            .execution_options(synchronize_session=False)
        )
        return _rowcount(result) == 1


class AppointmentRepository(Repository):
    def get(self, appointment_id: str) -> AppointmentRow | None:
        return self.session.get(AppointmentRow, appointment_id)

    def for_request(self, request_id: str) -> AppointmentRow | None:
        query = (
            select(AppointmentRow)
            .where(col(AppointmentRow.request_id) == request_id)
            .order_by(col(AppointmentRow.created_at).desc())
        )
        return self.session.execute(query).scalars().first()

    def loads(self, org_ids: Iterable[str]) -> dict[str, int]:
        """Live (pending or booked) appointments per effecteur (index: org_id, status)."""
        ids = sorted(set(org_ids))
        if not ids:
            return {}
        query = (
            select(col(AppointmentRow.org_id), func.count())
            .where(col(AppointmentRow.org_id).in_(ids), col(AppointmentRow.status).in_(LIVE_APPOINTMENT))
            .group_by(col(AppointmentRow.org_id))
        )
        return {org: count for org, count in self.session.execute(query).all()}


class FactRepository(Repository):
    def get(self, request_id: str) -> FactRow | None:
        return self.session.get(FactRow, request_id)

    def in_period(self, territory: str, start: datetime, end: datetime) -> list[FactRow]:
        query = select(FactRow).where(
            col(FactRow.territory) == territory, col(FactRow.requested_at) >= start, col(FactRow.requested_at) < end
        )
        return list(self.session.execute(query.order_by(col(FactRow.requested_at))).scalars())
