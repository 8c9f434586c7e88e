"""The snp unit of work: the kernel's outbox, inbox and audit plus this service's repositories."""

from __future__ import annotations

from sqlmodel import Session

from services.snp.adapters.orm import MIRRORS
from services.snp.adapters.repositories import (
    AppointmentRepository,
    FactRepository,
    RequestRepository,
    ScheduleRepository,
    SlotRepository,
)
from shared.db.uow import UnitOfWork
from shared.mirrors import MirrorRepository


class SnpUnitOfWork(UnitOfWork):
    schedules: ScheduleRepository
    slots: SlotRepository
    requests: RequestRepository
    appointments: AppointmentRepository
    mirrors: MirrorRepository
    facts: FactRepository

    def _open_repositories(self, session: Session) -> None:
        self.schedules = ScheduleRepository(session)
        self.slots = SlotRepository(session)
        self.requests = RequestRepository(session)
        self.appointments = AppointmentRepository(session)
        self.mirrors = MirrorRepository(session, MIRRORS)
        self.facts = FactRepository(session)
