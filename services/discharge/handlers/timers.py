"""Durable deadlines: the earliest due timer fires, its effect and its claim in one transaction."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Protocol

from sqlalchemy.exc import DBAPIError, OperationalError

from services.discharge.commands import FireNextTimer, SetTimerAside
from services.discharge.deps import Deps
from services.discharge.domain import Policy, TimerKind
from services.discharge.handlers.followups import escalate_followup, remind_followup
from services.discharge.handlers.handoffs import expire_handoff
from services.discharge.uow import DischargeUnitOfWork

log = logging.getLogger(__name__)


class TimerEffect(Protocol):
    """What a due deadline does; False when its subject no longer waits (the timer is then obsolete)."""

    def __call__(
        self, uow: DischargeUnitOfWork, subject_id: str, level: int, /, *, now: datetime, policy: Policy, source_id: str
    ) -> bool: ...


EFFECTS: dict[str, TimerEffect] = {
    TimerKind.HANDOFF_EXPIRY: expire_handoff,
    TimerKind.FOLLOWUP_MISSED: escalate_followup,
    TimerKind.FOLLOWUP_REMINDER: remind_followup,
}


class TimerFailed(Exception):
    def __init__(self, timer_id: str) -> None:
        super().__init__(f"timer {timer_id} failed")
        self.timer_id = timer_id


def fire_next_timer(cmd: FireNextTimer, uow: DischargeUnitOfWork, deps: Deps) -> str | None:
    """Fire the earliest due timer; None when nothing is due, "" when another worker claimed it first,
    else the id of the timer this worker fired."""
    with uow:
        now = deps.clock()
        timer = uow.timers.next_due(now)
        if timer is None:
            return None
        timer_id, kind, subject, level = timer.id, timer.kind, timer.subject_id, timer.level
        if not uow.timers.claim(timer_id, now, cmd.worker):
            uow.rollback()
            return ""
        try:
            fired = _fire(uow, timer_id, kind, subject, level, now=now, policy=deps.policy)
            if not fired:
                uow.timers.set_outcome(timer_id, "obsolete")
            uow.commit()
        except TimerFailed:
            raise
        except Exception as exc:
            if transient(exc):
                raise  # the database is away or busy: the timer stays due and is retried
            # A permanent error (a value the database refuses, a constraint) would come back on every retry
            # and hold every later deadline: the worker sets this timer aside.
            raise TimerFailed(timer_id) from exc
    return timer_id


def transient(exc: BaseException) -> bool:
    """An error worth retrying the same timer for: the database unreachable, busy or the connection lost."""
    if isinstance(exc, OperationalError):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


def _fire(
    uow: DischargeUnitOfWork, timer_id: str, kind: str, subject: str, level: int, *, now: datetime, policy: Policy
) -> bool:
    effect = EFFECTS.get(kind)
    if effect is None:
        log.error("unknown timer kind %s (%s): marked obsolete", kind, timer_id)
        return False
    try:
        return effect(uow, subject, level, now=now, policy=policy, source_id=timer_id)
    except Exception as exc:
        if transient(exc):
            raise  # the database is away: the timer stays due and is retried
        raise TimerFailed(timer_id) from exc


def set_timer_aside(cmd: SetTimerAside, uow: DischargeUnitOfWork, deps: Deps) -> None:
    with uow:
        uow.timers.claim(cmd.timer_id, deps.clock(), cmd.worker, outcome="error")
        uow.commit()
