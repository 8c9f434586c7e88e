"""The discharge unit of work: the kernel's outbox, inbox and audit plus this service's repositories."""

from __future__ import annotations

from sqlmodel import Session

from services.discharge.adapters.orm import MIRRORS
from services.discharge.adapters.repositories import (
    DischargeRepository,
    FollowupRepository,
    HandoffRepository,
    MessageRepository,
    OrientationRepository,
    TimerRepository,
)
from shared.db.uow import UnitOfWork
from shared.mirrors import MirrorRepository


class DischargeUnitOfWork(UnitOfWork):
    messages: MessageRepository
    discharges: DischargeRepository
    handoffs: HandoffRepository
    followups: FollowupRepository
    orientations: OrientationRepository
    timers: TimerRepository
    mirror: MirrorRepository

    def _open_repositories(self, session: Session) -> None:
        self.messages = MessageRepository(session)
        self.discharges = DischargeRepository(session)
        self.handoffs = HandoffRepository(session)
        self.followups = FollowupRepository(session)
        self.orientations = OrientationRepository(session)
        self.timers = TimerRepository(session)
        self.mirror = MirrorRepository(session, MIRRORS)
