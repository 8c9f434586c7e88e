"""Orientation handlers: the CPTS finds a treating team for a discharged patient who has none or lost it.

Opened when a discharge finds no team or a handoff fails; $assign proposes a team (a handoff the team decides on
minimised facts); the team's answer completes it or sends it back to the CPTS. Each step is one transaction, keyed
so that a retry or a restart does it once.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError

from services.discharge import domain
from services.discharge.adapters.orm import DischargeRow, HandoffRow, OrientationRow
from services.discharge.commands import AssignOrientation
from services.discharge.deps import Deps
from services.discharge.domain import FollowupStatus, HandoffStatus, OrientationStatus, Policy, TimerKind
from services.discharge.handlers.common import about, domain_event, notify, routing_context, schedule, task_bundle
from services.discharge.resources import orientation_task, without_owner
from services.discharge.uow import DischargeUnitOfWork
from shared.contracts import TreatingTeamAssigned, registry_update_record
from shared.errors import Conflict, NotFound, Unprocessable
from shared.events import EventType, Role
from shared.routing import Recipient, route


def open_orientation(
    uow: DischargeUnitOfWork, discharge: DischargeRow, reason: str, *, now: datetime, source_id: str
) -> OrientationRow | None:
    """Give the CPTS of the patient's territory an orientation Task; None when no CPTS may be asked (no territory,
    opposition, local-only identity). A discharge has one orientation: a later failure returns the same one."""
    existing = uow.orientations.for_discharge(discharge.id)
    if existing is not None:
        return existing
    ctx = routing_context(uow, discharge, team_org_id=None, pin_team=True)
    event = EventType.ORIENTATION_REQUESTED
    recipients = route(event, ctx)
    if not ctx.cpts_org_id or not any(r.role is Role.CPTS for r in recipients):
        return None
    row = OrientationRow(
        id=domain.derived_id(discharge.id, "orientation"),
        discharge_id=discharge.id,
        patient_key=discharge.patient_key,
        hospital_org_id=discharge.hospital_org_id,
        cpts_org_id=ctx.cpts_org_id,
        status=OrientationStatus.REQUESTED,
        reason=reason,
        requested_at=now,
        updated_at=now,
    )
    uow.orientations.add(row)
    _tell(uow, event, recipients, row, discharge, source_id=source_id, actor=None, now=now)
    uow.audit.record(
        "orientation.request", outcome="ok", resource=f"Task/{row.id}", detail={"reason": reason}
    )
    return row


def assign_orientation(cmd: AssignOrientation, uow: DischargeUnitOfWork, deps: Deps) -> dict[str, Any]:
    """The CPTS that owns the orientation proposes a team; anyone else gets 404. A retried $assign with the same
    team answers the same Task; another team while one is deciding is a 409."""
    team = domain.check_team_id(cmd.team_org_id)
    known = deps.organisation(team)
    if known is None or known.role != Role.TEAM.value:
        raise Unprocessable(
            "team must name a registered treating team (MSP, centre de santé, ESP)",
            expression=["Parameters.parameter[team]"],
        )
    for _attempt in range(2):
        with uow:
            row = uow.orientations.get(cmd.task_id, for_update=True)
            if row is None or row.cpts_org_id != cmd.cpts_org_id:
                break
            discharge = uow.discharges.require(row.discharge_id)
            if domain.is_repeated_assign(row.status, row.team_org_id, team):
                return _render(uow, row, discharge)
            _propose(uow, deps, row, discharge, team, actor=cmd.cpts_org_id)
            task = _render(uow, row, discharge)
            try:
                uow.commit()
            except IntegrityError:
                uow.rollback()
                continue  # a concurrent $assign won: the next pass answers from what it stored
            return task
    else:
        raise Conflict(f"Task/{cmd.task_id} is being assigned concurrently; retry", expression=["Task.status"])
    if row is not None:
        deps.record_refusal(
            "orientation.assign",
            organisation_id=cmd.cpts_org_id,
            role=Role.CPTS.value,
            resource=f"Task/{cmd.task_id}",
            reason="not-the-owner",
        )
    raise NotFound(f"Task/{cmd.task_id} is not known")


def _propose(
    uow: DischargeUnitOfWork, deps: Deps, row: OrientationRow, discharge: DischargeRow, team: str, *, actor: str
) -> None:
    # Stored in UTC: SQLite keeps no offset, and a replay must render the same instant.
    now, policy = domain.as_utc(deps.clock()), deps.policy
    row.status = domain.next_orientation_status(row.status, "assign", row.id)
    row.attempts += 1
    handoff = HandoffRow(
        # Keyed by attempt: a replay of the same proposal collides on the primary key instead of doubling it.
        id=domain.derived_id(row.id, "handoff", str(row.attempts)),
        discharge_id=discharge.id,
        patient_key=discharge.patient_key,
        hospital_org_id=discharge.hospital_org_id,
        team_org_id=team,
        status=HandoffStatus.REQUESTED,
        hospital_referent=(discharge.payload or {}).get("referent") or {},
        requested_at=now,
        expires_at=now + policy.handoff_expiry,
        updated_at=now,
        orientation_id=row.id,
    )
    uow.handoffs.add(handoff)
    schedule(uow, TimerKind.HANDOFF_EXPIRY, handoff.id, 0, handoff.expires_at)
    row.team_org_id, row.handoff_id, row.updated_at = team, handoff.id, now
    event = EventType.ORIENTATION_ASSIGNED
    ctx = routing_context(uow, discharge, team_org_id=team)
    _tell(uow, event, route(event, ctx), row, discharge, source_id=handoff.id, actor=actor, now=now, task=handoff.id)
    uow.audit.record(
        "orientation.assign",
        outcome="ok",
        organisation_id=actor,
        role=Role.CPTS.value,
        resource=f"Task/{row.id}",
        detail={"team": team, "handoff": handoff.id},
    )


def on_orientation_handoff(
    uow: DischargeUnitOfWork,
    handoff: HandoffRow,
    discharge: DischargeRow,
    action: str,
    *,
    actor: str | None,
    now: datetime,
    policy: Policy,
    source_id: str,
    handoff_task: dict[str, Any],
) -> None:
    """The proposed team answered (or the deadline did): complete the orientation, or give it back to the CPTS."""
    row = uow.orientations.get(handoff.orientation_id or "", for_update=True)
    if row is None or row.handoff_id != handoff.id or row.status != OrientationStatus.IN_PROGRESS:
        return
    if action == "accept":
        row.status = domain.next_orientation_status(row.status, "accept", row.id)
        discharge.team_org_id = handoff.team_org_id
        discharge.updated_at = now
        # The items nobody held are the new team's now.
        for item in uow.followups.for_discharge(discharge.id):
            if item.status == FollowupStatus.REQUESTED and item.team_org_id is None:
                item.team_org_id, item.handoff_id, item.updated_at = handoff.team_org_id, handoff.id, now
        update = TreatingTeamAssigned(
            assignment_id=handoff.id,
            patient_key=discharge.patient_key,
            subject_system=discharge.patient_system,
            subject_value=discharge.patient_value,
            team_org_id=handoff.team_org_id,
            cpts_org_id=row.cpts_org_id,
            postal_code=discharge.postal_code,
            at=domain.fhir_instant(now),
        )
        topic, key, kind, data = registry_update_record(update)
        uow.outbox.add(topic, key, kind, data, message_id=domain.derived_id(source_id, "registry", kind))
        event = EventType.ORIENTATION_ACCEPTED
        ctx = routing_context(uow, discharge, team_org_id=handoff.team_org_id)
    elif action in ("decline", "expire"):
        row.status = domain.next_orientation_status(row.status, "return", row.id)
        row.reason = domain.return_reason(action)
        event = EventType.ORIENTATION_RETURNED
        ctx = routing_context(uow, discharge, team_org_id=None, pin_team=True, handoff_failed=True)
    else:  # the hospital withdrew the handoff: the orientation waits for the CPTS again
        row.status = domain.next_orientation_status(row.status, "return", row.id)
        row.updated_at = now
        return
    row.updated_at = now
    recipients = route(event, ctx)
    shown, sender = handoff_task, actor
    if event is EventType.ORIENTATION_RETURNED:  # the hospital never learns which team turned the patient down
        shown, sender = without_owner(handoff_task), None
    _tell(
        uow, event, recipients, row, discharge, source_id=source_id, actor=sender, now=now, task=handoff.id,
        full=lambda: task_bundle(event, shown, policy, sender),
    )
    uow.audit.record(
        "orientation.accept" if action == "accept" else "orientation.return",
        outcome="ok",
        organisation_id=actor,
        resource=f"Task/{row.id}",
        detail={"team": handoff.team_org_id, "reason": row.reason, "status": row.status},
    )


def cancel_orientation(uow: DischargeUnitOfWork, discharge_id: str, now: datetime) -> None:
    row = uow.orientations.for_discharge(discharge_id)
    if row is not None and (row.status, "cancel") in domain.ORIENTATION_TRANSITIONS:
        row.status = OrientationStatus.CANCELLED
        row.updated_at = now


def _render(uow: DischargeUnitOfWork, row: OrientationRow, discharge: DischargeRow) -> dict[str, Any]:
    return orientation_task(row, discharge, uow.followups.for_discharge(discharge.id))


def _tell(
    uow: DischargeUnitOfWork,
    event: EventType,
    recipients: list[Recipient],
    row: OrientationRow,
    discharge: DischargeRow,
    *,
    source_id: str,
    actor: str | None,
    now: datetime,
    task: str | None = None,
    full: Callable[[], dict[str, Any]] | None = None,
) -> None:
    rendered = _render(uow, row, discharge)
    notify(
        uow,
        recipients,
        event,
        source_id=source_id,
        about=about(discharge, f"Task/{task or row.id}"),
        sender=actor,
        occurred_at=now,
        now=now,
        # Only accepted/returned reach full-detail recipients, and they pass `full`: this default is a safe fallback.
        full=full or (lambda: task_bundle(event, rendered, Policy(), actor)),
    )
    domain_event(uow, event.value, source_id, discharge, task=row.id, status=row.status)
