"""Follow-up plan rules: who owns an item, when it escalates, when it counts as done. Pure functions."""

from __future__ import annotations

from datetime import datetime, timedelta

from services.discharge.domain.model import FollowupStatus, MirrorState
from shared.errors import Conflict, Unprocessable


def followup_owner(assigned_team: str | None, mirror: MirrorState | None, let_go: set[str]) -> str | None:
    """Who owns a follow-up item: the team handed the patient, else the current team unless it let go."""
    if assigned_team:
        return assigned_team
    if mirror and mirror.team_active and mirror.team_org_id not in let_go:
        return mirror.team_org_id
    return None


def escalation_deadlines(due_at: datetime, grace: timedelta) -> tuple[tuple[int, datetime], ...]:
    """(level, when) of a follow-up's escalations: the team at the deadline, then CPTS/DAC after the grace."""
    return ((0, due_at), (1, due_at + grace))


def completion_time(status: str, task_id: str, done_at: datetime | None, now: datetime) -> datetime | None:
    """When a follow-up was done, or None when it is already recorded as done (a retry changes nothing)."""
    if status == FollowupStatus.CANCELLED:
        raise Conflict(f"Task/{task_id} was cancelled by the hospital", expression=["Task.status"])
    if status == FollowupStatus.COMPLETED:
        return None
    moment = done_at or now
    if moment > now:
        raise Unprocessable("a follow-up cannot be done in the future", expression=["Parameters.completedAt"])
    return moment


def reminder_time(due_at: datetime, ahead: timedelta, now: datetime) -> datetime | None:
    """When the team referent is reminded of a follow-up: `ahead` before it is due, if that is still to come."""
    if ahead <= timedelta(0):
        return None
    moment = due_at - ahead
    return moment if moment > now else None
