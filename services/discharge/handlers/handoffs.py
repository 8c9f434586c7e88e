"""Handoff Task handlers: the team accepts or declines, the hospital cancels, the deadline expires it.
The state change itself is the domain's (domain.handoff_change); here it is applied, notified and audited."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from services.discharge import domain
from services.discharge.adapters.orm import HandoffRow
from services.discharge.commands import AcceptHandoff, CancelHandoff, DeclineHandoff
from services.discharge.deps import Deps
from services.discharge.domain import FollowupStatus, HandoffStatus, Policy
from services.discharge.handlers.common import about, domain_event, notify, routing_context, task_bundle
from services.discharge.handlers.orientation import on_orientation_handoff, open_orientation
from services.discharge.uow import DischargeUnitOfWork
from services.discharge.views import mirror_state, render_handoff
from shared.carecircle import CircleFacts, NotInCircle, Share, share
from shared.events import Role
from shared.routing import route


def accept_handoff(cmd: AcceptHandoff, uow: DischargeUnitOfWork, deps: Deps) -> dict[str, Any]:
    return _on_handoff(uow, deps, cmd.task_id, cmd.team_org_id, Role.TEAM, "accept")


def decline_handoff(cmd: DeclineHandoff, uow: DischargeUnitOfWork, deps: Deps) -> dict[str, Any]:
    reason = domain.check_decline_reason(cmd.reason)
    return _on_handoff(uow, deps, cmd.task_id, cmd.team_org_id, Role.TEAM, "decline", reason)


def cancel_handoff(cmd: CancelHandoff, uow: DischargeUnitOfWork, deps: Deps) -> dict[str, Any]:
    return _on_handoff(uow, deps, cmd.task_id, cmd.hospital_org_id, Role.HOSPITAL, "cancel", cmd.reason)


def _on_handoff(
    uow: DischargeUnitOfWork,
    deps: Deps,
    task_id: str,
    org_id: str,
    role: Role,
    action: str,
    reason: str | None = None,
) -> dict[str, Any]:
    """`action` by one side of the handoff (its team, or its hospital for a cancel); anyone else gets 404."""
    with uow:
        handoff = uow.handoffs.get(task_id, for_update=True)
        circle = CircleFacts(team_org_id=handoff.team_org_id, hospitals=frozenset({handoff.hospital_org_id})) if (
            handoff is not None
        ) else CircleFacts()
        # The kernel's care-circle policy: the team acts on its Task, the hospital on its own encounter's.
        if handoff is not None and share(role, org_id, circle) in (Share.FULL, Share.OWN_ENCOUNTERS):
            task = _act(uow, deps, handoff, action, actor=org_id, reason=reason)
            uow.commit()
            return task
    # Never confirm a Task exists to a stranger; an attempt on an existing one is audited, after our transaction.
    if handoff is not None:
        deps.record_refusal(
            f"handoff.{action}",
            organisation_id=org_id,
            role=role.value,
            resource=f"Task/{task_id}",
            reason="not-a-party",
        )
    raise NotInCircle(f"Task/{task_id}")


def expire_handoff(
    uow: DischargeUnitOfWork, task_id: str, level: int, *, now: datetime, policy: Policy, source_id: str
) -> bool:
    """Nobody answered in time; False when the handoff was answered or withdrawn meanwhile."""
    handoff = uow.handoffs.get(task_id, for_update=True)
    if handoff is None or handoff.status != HandoffStatus.REQUESTED:
        return False
    apply_handoff_action(uow, handoff, "expire", actor=None, now=now, policy=policy, source_id=source_id)
    return True


def _act(
    uow: DischargeUnitOfWork,
    deps: Deps,
    handoff: HandoffRow,
    action: str,
    *,
    actor: str,
    reason: str | None = None,
) -> dict[str, Any]:
    if domain.is_repeated_handoff_action(handoff.status, action):
        return render_handoff(uow, handoff, uow.discharges.require(handoff.discharge_id))  # a retried request
    return apply_handoff_action(
        uow,
        handoff,
        action,
        actor=actor,
        now=deps.clock(),
        policy=deps.policy,
        source_id=f"{handoff.id}:{action}",
        reason=reason,
    )


def apply_handoff_action(
    uow: DischargeUnitOfWork,
    handoff: HandoffRow,
    action: str,
    *,
    actor: str | None,
    now: datetime,
    policy: Policy,
    source_id: str,
    reason: str | None = None,
) -> dict[str, Any]:
    """Apply the domain's state change to the handoff and tell who the routing table names."""
    change = domain.handoff_change(handoff.status, action, handoff.id, reason)
    handoff.status = change.status
    handoff.decided_at = now
    handoff.updated_at = now
    if change.reason:
        handoff.reason = change.reason
    if change.business_status:
        handoff.business_status = change.business_status
    discharge = uow.discharges.require(handoff.discharge_id)
    if change.status == HandoffStatus.ACCEPTED:
        mirror = mirror_state(uow, discharge.patient_key)
        handoff.team_referent = mirror.referent if mirror else None
        if handoff.orientation_id and handoff.team_referent is None:
            handoff.team_referent = {}  # marks an oriented handoff as once accepted (resources.sees_full_handoff)
    if change.team_let_go:
        # Its follow-up items wait for the next team the CPTS finds.
        for item in uow.followups.for_discharge(discharge.id):
            if item.team_org_id == handoff.team_org_id and item.status == FollowupStatus.REQUESTED:
                item.team_org_id = None
                item.updated_at = now
    uow.timers.cancel_for(handoff.id, now, outcome="obsolete")
    task = render_handoff(uow, handoff, discharge)
    if handoff.orientation_id:
        # A team the CPTS proposed: the orientation's events tell who needs to know, with the right detail.
        on_orientation_handoff(
            uow, handoff, discharge, action, actor=actor, now=now, policy=policy, source_id=source_id, handoff_task=task
        )
        if action != "cancel":
            _audit(uow, handoff, action, actor)
            return task
    event = change.event
    ctx = routing_context(uow, discharge, team_org_id=handoff.team_org_id, handoff_failed=change.team_let_go)
    notify(
        uow,
        route(event, ctx),
        event,
        source_id=source_id,
        about=about(discharge, handoff.id),
        sender=actor,
        occurred_at=now,
        now=now,
        full=lambda: task_bundle(event, task, policy, actor),
    )
    domain_event(uow, event.value, source_id, discharge, task=handoff.id, status=handoff.status)
    if change.team_let_go and not handoff.orientation_id:
        # The team let go: the CPTS of the territory is asked to find another one.
        open_orientation(uow, discharge, domain.return_reason(action), now=now, source_id=source_id)
    _audit(uow, handoff, action, actor)
    return task


def _audit(uow: DischargeUnitOfWork, handoff: HandoffRow, action: str, actor: str | None) -> None:
    uow.audit.record(
        f"handoff.{action}",
        outcome="ok",
        organisation_id=actor,
        resource=f"Task/{handoff.id}",
        detail={"status": handoff.status},
    )
