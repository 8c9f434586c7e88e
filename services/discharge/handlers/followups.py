"""Follow-up plan handlers: the team records an item as done; a missed deadline escalates by level."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from services.discharge import domain
from services.discharge.adapters.orm import DischargeRow, FollowupRow
from services.discharge.commands import CompleteFollowup
from services.discharge.deps import Deps
from services.discharge.domain import FollowupStatus, Policy, TimerKind
from services.discharge.handlers.common import about, domain_event, notify, routing_context, schedule, task_bundle
from services.discharge.resources import followup_task
from services.discharge.uow import DischargeUnitOfWork
from services.discharge.views import followup_team
from shared.carecircle import CircleFacts, NotInCircle, Share, share
from shared.events import EventType, Role
from shared.routing import route


def complete_followup(cmd: CompleteFollowup, uow: DischargeUnitOfWork, deps: Deps) -> dict[str, Any]:
    with uow:
        item = uow.followups.get(cmd.task_id, for_update=True)
        discharge = uow.discharges.get(item.discharge_id) if item else None
        team = followup_team(uow, item, discharge) if item is not None and discharge is not None else None
        mine = share(Role.TEAM, cmd.team_org_id, CircleFacts(team_org_id=team)) is Share.FULL
        if item is not None and discharge is not None and mine:
            task = _complete(uow, deps, cmd, item, discharge)
            uow.commit()
            return task
    # Never confirm a Task exists to a stranger; an attempt on an existing one is audited, after our transaction.
    if item is not None:
        deps.record_refusal(
            "followup.complete",
            organisation_id=cmd.team_org_id,
            role=Role.TEAM.value,
            resource=f"Task/{cmd.task_id}",
            reason="not-a-party",
        )
    raise NotInCircle(f"Task/{cmd.task_id}")


def _complete(
    uow: DischargeUnitOfWork, deps: Deps, cmd: CompleteFollowup, item: FollowupRow, discharge: DischargeRow
) -> dict[str, Any]:
    now = deps.clock()
    done_at = domain.completion_time(item.status, item.id, cmd.done_at, now)
    if done_at is not None:
        item.status = FollowupStatus.COMPLETED
        item.completed_at = done_at
        item.team_org_id = cmd.team_org_id
        item.updated_at = now
        # Done before the deadline: its pending escalations have nothing left to say.
        uow.timers.cancel_for(item.id, now, outcome="obsolete")
        uow.audit.record(
            "followup.complete",
            outcome="ok",
            organisation_id=cmd.team_org_id,
            role=Role.TEAM.value,
            resource=f"Task/{item.id}",
        )
    return followup_task(item, discharge, item.team_org_id)


def escalate_followup(
    uow: DischargeUnitOfWork, task_id: str, level: int, *, now: datetime, policy: Policy, source_id: str
) -> bool:
    """A follow-up deadline (level 0) or its grace (level 1) passed; False when the item no longer waits."""
    item = uow.followups.get(task_id, for_update=True)
    if item is None or item.status != FollowupStatus.REQUESTED:
        return False
    discharge = uow.discharges.require(item.discharge_id)
    team = followup_team(uow, item, discharge)
    item.escalation_level = level
    item.updated_at = now
    event = EventType.FOLLOWUP_MISSED
    ctx = routing_context(uow, discharge, team_org_id=team, pin_team=True, escalation_level=level)
    task = followup_task(item, discharge, team)
    recipients = notify(
        uow,
        route(event, ctx),
        event,
        source_id=source_id,
        about=about(discharge, item.id),
        sender=None,
        occurred_at=item.due_at,
        now=now,
        full=lambda: task_bundle(event, task, policy, None),
    )
    sent_to = [r.organisation_id for r in recipients]
    domain_event(uow, event.value, source_id, discharge, task=item.id, level=level, recipients=sent_to)
    uow.audit.record(
        "followup.escalate",
        outcome="ok",
        resource=f"Task/{item.id}",
        detail={"level": level, "recipients": sent_to},
    )
    return True


def remind_followup(
    uow: DischargeUnitOfWork, task_id: str, level: int, *, now: datetime, policy: Policy, source_id: str
) -> bool:
    """A follow-up deadline is near: its team referent is reminded; False when nobody holds it or it is done."""
    item = uow.followups.get(task_id, for_update=True)
    if item is None or item.status != FollowupStatus.REQUESTED:
        return False
    discharge = uow.discharges.require(item.discharge_id)
    team = followup_team(uow, item, discharge)
    if team is None:
        return False
    event = EventType.FOLLOWUP_DUE
    ctx = routing_context(uow, discharge, team_org_id=team, pin_team=True)
    task = followup_task(item, discharge, team)
    recipients = notify(
        uow,
        route(event, ctx),
        event,
        source_id=source_id,
        about=about(discharge, item.id),
        sender=None,
        occurred_at=now,
        now=now,
        full=lambda: task_bundle(event, task, policy, None),
    )
    sent_to = [r.organisation_id for r in recipients]
    domain_event(uow, event.value, source_id, discharge, task=item.id, recipients=sent_to)
    uow.audit.record("followup.remind", outcome="ok", resource=f"Task/{item.id}", detail={"team": team})
    return True


def plan_followups(
    uow: DischargeUnitOfWork,
    discharge: DischargeRow,
    items: Iterable[domain.FollowupPlanItem],
    *,
    source_id: str,
    handoff_id: str | None,
    team_org_id: str | None,
    now: datetime,
    policy: Policy,
) -> list[FollowupRow]:
    rows = []
    for index, item in enumerate(items):
        row = FollowupRow(
            id=domain.derived_id(source_id, "followup", str(index)),
            discharge_id=discharge.id,
            handoff_id=handoff_id,
            patient_key=discharge.patient_key,
            hospital_org_id=discharge.hospital_org_id,
            team_org_id=team_org_id,
            code=item.code,
            display=item.display[:300],
            status=FollowupStatus.REQUESTED,
            due_at=item.due_at,
            updated_at=now,
        )
        uow.followups.add(row)
        # Every escalation level is durable from the start: a restart between them loses nothing.
        for level, due_at in domain.escalation_deadlines(item.due_at, policy.followup_grace):
            # A deadline already past when the message arrived is shown late, never escalated in a burst.
            if domain.as_utc(due_at) > domain.as_utc(now):
                schedule(uow, TimerKind.FOLLOWUP_MISSED, row.id, level, due_at)
        reminder_at = domain.reminder_time(item.due_at, policy.followup_reminder, now)
        if reminder_at is not None:
            schedule(uow, TimerKind.FOLLOWUP_REMINDER, row.id, 0, reminder_at)
        rows.append(row)
    return rows


def cancel_open_followups(uow: DischargeUnitOfWork, discharge_id: str, now: datetime) -> None:
    for item in uow.followups.for_discharge(discharge_id):
        if item.status == FollowupStatus.REQUESTED:
            item.status = FollowupStatus.CANCELLED
            item.updated_at = now
            uow.timers.cancel_for(item.id, now)
