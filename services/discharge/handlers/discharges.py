"""Discharge message handlers: record, revise or cancel a discharge. A replayed message gets the stored answer;
each handler stores the answer, the outbox rows and the audit entry in one transaction."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy.exc import IntegrityError

from services.discharge import domain
from services.discharge.adapters.orm import DischargeMessageRow, DischargeRow, HandoffRow
from services.discharge.commands import CancelDischarge, DischargeMessage, RecordDischarge, ReviseDischarge
from services.discharge.deps import Deps
from services.discharge.domain import (
    DischargeFacts,
    DischargeStatus,
    FollowupStatus,
    HandoffStatus,
    OrientationStatus,
    Policy,
    TimerKind,
)
from services.discharge.handlers.common import about, domain_event, notify, routing_context, schedule, task_bundle
from services.discharge.handlers.followups import cancel_open_followups, plan_followups
from services.discharge.handlers.orientation import cancel_orientation, open_orientation
from services.discharge.resources import followup_task, handoff_task, without_owner
from services.discharge.uow import DischargeUnitOfWork
from shared.errors import Conflict, Forbidden
from shared.events import EventType, Role
from shared.fhir.builders import message_bundle, message_response
from shared.fhir.encounter import check_same_patient, local_only_issue
from shared.fhir.models import Bundle
from shared.fhir.outcome import issue, outcome_from_issues
from shared.idempotence import check_replay
from shared.identifiers import FINESS, INS_SYSTEMS
from shared.reach import nobody_reached
from shared.routing import Recipient, recipients_from_json, recipients_to_json, route

M = TypeVar("M", bound=DischargeMessage)
Response = dict[str, Any]


def record_discharge(cmd: RecordDischarge, uow: DischargeUnitOfWork, deps: Deps) -> Response:
    return _once(cmd, uow, deps, _record)


def revise_discharge(cmd: ReviseDischarge, uow: DischargeUnitOfWork, deps: Deps) -> Response:
    return _once(cmd, uow, deps, _revise)


def cancel_discharge(cmd: CancelDischarge, uow: DischargeUnitOfWork, deps: Deps) -> Response:
    return _once(cmd, uow, deps, _cancel)


def _once(
    cmd: M, uow: DischargeUnitOfWork, deps: Deps, apply: Callable[[DischargeUnitOfWork, M, str, Deps], Response]
) -> Response:
    """A replay gets the stored answer; a new message is applied and committed once."""
    try:
        domain.check_hospital(cmd.caller_org_id, cmd.facts.hospital_org_id)
    except Forbidden:
        deps.record_refusal(
            cmd.event_type.value,
            organisation_id=cmd.caller_org_id,
            role=Role.HOSPITAL.value,
            resource=None,
            reason="another hospital's message",
        )
        raise
    patient_key = deps.pseudonymise(cmd.facts.patient.system, cmd.facts.patient.value)
    for _attempt in range(2):
        with uow:
            stored = uow.messages.get(cmd.message_id)
            if stored is not None:
                check_replay(stored.fingerprint, cmd.fingerprint, cmd.message_id)
                return stored.response
            response = apply(uow, cmd, patient_key, deps)
            try:
                uow.commit()
            except IntegrityError:
                uow.rollback()
                continue  # a concurrent delivery won: the next pass answers from what it stored
            return response
    raise Conflict(f"message {cmd.message_id} is being processed concurrently; retry", expression=["Bundle.id"])


def _record(uow: DischargeUnitOfWork, cmd: RecordDischarge, patient_key: str, deps: Deps) -> Response:
    facts, now, policy = cmd.facts, deps.clock(), deps.policy
    existing = uow.discharges.by_encounter(facts.hospital_org_id, facts.encounter_key)
    domain.check_first_discharge(facts.encounter_key, existing.message_id if existing else None)
    readmission = domain.is_readmission(
        (domain.as_utc(d) for d in uow.discharges.discharge_times(patient_key)),
        facts.started_at or facts.discharged_at,
        policy.readmission_window,
    )
    met, complex_case = domain.complexity(facts.flags, readmission, policy.criteria)
    discharge = _new_discharge(cmd, patient_key, met, complex_case, readmission, now)
    ctx = routing_context(uow, discharge)
    team = discharge.team_org_id = ctx.team_org_id
    handoff = _request_handoff(uow, discharge, team, now, policy) if team else None
    followups = plan_followups(
        uow,
        discharge,
        facts.followups,
        source_id=cmd.message_id,
        handoff_id=handoff.id if handoff else None,
        team_org_id=team,
        now=now,
        policy=policy,
    )
    tasks = ([handoff_task(handoff, discharge, facts.letter)] if handoff else []) + [
        followup_task(f, discharge, team) for f in followups
    ]
    event = EventType.DISCHARGE_RECORDED
    recipients = _notify_discharge(uow, cmd, discharge, route(event, ctx), event, tasks, policy, now)
    discharge.recipients = recipients_to_json(recipients)
    uow.discharges.add(discharge)
    if not team:
        # Nobody to hand the patient to: the CPTS of the territory is asked to find a team.
        open_orientation(uow, discharge, "no-team", now=now, source_id=cmd.message_id)
    if handoff and team:
        _propose_handoff(uow, discharge, handoff, team, tasks[0], source_id=cmd.message_id, policy=policy, now=now)
    domain_event(
        uow,
        event.value,
        cmd.message_id,
        discharge,
        discharged_at=domain.fhir_instant(facts.discharged_at),
        complex=complex_case,
        readmission=readmission,
        handoff=handoff.id if handoff else None,
        recipients=[r.organisation_id for r in recipients],
    )
    notes = domain.recording_notes(
        readmission=readmission,
        complex_case=complex_case,
        criteria_met=met,
        has_letter=bool(facts.letter),
    )
    late = sum(1 for f in followups if domain.as_utc(f.due_at) <= domain.as_utc(now))
    if late:
        notes.append(f"{late} follow-up deadline(s) had passed before the message arrived: shown late, not escalated")
    warnings = [] if recipients else [nobody_reached("discharge", event.value)]
    return _answer(uow, cmd, discharge.id, tasks, notes, now, warnings)


def hand_to_awaited_team(
    uow: DischargeUnitOfWork, discharge: DischargeRow, team: str, *, source_id: str, now: datetime, policy: Policy
) -> None:
    """The discharge was recorded while the team's enrolment was still on the bus: the team now gets what it would
    have got then (the discharge, the handoff Task, its follow-ups), and the CPTS's orientation, if no team has
    been proposed yet, is cancelled. Notification ids derive from the discharge message: a replay sends nothing."""
    discharge.team_org_id = team
    handoff = _request_handoff(uow, discharge, team, now, policy)
    followups = uow.followups.for_discharge(discharge.id)
    for item in followups:
        if item.team_org_id is None and item.status == FollowupStatus.REQUESTED:
            item.team_org_id, item.handoff_id = team, handoff.id
    tasks = [handoff_task(handoff, discharge, discharge.payload.get("letter"))]
    tasks += [followup_task(item, discharge, team) for item in followups]
    told = recipients_from_json(discharge.recipients)
    event = EventType.DISCHARGE_RECORDED
    told_orgs = {r.organisation_id for r in told}
    awaited = [r for r in route(event, routing_context(uow, discharge)) if r.organisation_id not in told_orgs]
    sent = _notify_discharge(uow, None, discharge, awaited, event, tasks, policy, now)
    discharge.recipients = recipients_to_json([*told, *sent])
    discharge.updated_at = now
    _propose_handoff(uow, discharge, handoff, team, tasks[0], source_id=discharge.message_id, policy=policy, now=now)
    orientation = uow.orientations.for_discharge(discharge.id)
    if orientation is not None and orientation.status == OrientationStatus.REQUESTED:
        cancel_orientation(uow, discharge.id, now)
    uow.audit.record(
        "discharge.awaited-team",
        outcome="ok",
        resource=f"discharge/{discharge.id}",
        detail={"team": team, "careteam_message": source_id},
    )


def _propose_handoff(
    uow: DischargeUnitOfWork,
    discharge: DischargeRow,
    handoff: HandoffRow,
    team: str,
    task: dict[str, Any],
    *,
    source_id: str,
    policy: Policy,
    now: datetime,
) -> None:
    proposed = EventType.HANDOFF_PROPOSED
    notify(
        uow,
        route(proposed, routing_context(uow, discharge, team_org_id=team)),
        proposed,
        source_id=source_id,
        about=about(discharge, handoff.id),
        sender=discharge.hospital_org_id,
        occurred_at=now,
        now=now,
        full=lambda: task_bundle(proposed, task, policy, discharge.hospital_org_id),
    )


def _revise(uow: DischargeUnitOfWork, cmd: ReviseDischarge, patient_key: str, deps: Deps) -> Response:
    facts, now, policy = cmd.facts, deps.clock(), deps.policy
    discharge = _original(uow, cmd)
    check_same_patient(discharge.patient_key, patient_key)
    met, complex_case = domain.complexity(facts.flags, discharge.readmission, policy.criteria)
    discharge.status = DischargeStatus.CORRECTED
    discharge.discharged_at = facts.discharged_at
    discharge.flags = sorted(met)
    discharge.complex_case = complex_case
    discharge.payload = _stored_payload(facts)
    discharge.updated_at = now
    # The new plan replaces what is still open; what the team already did stays done.
    cancel_open_followups(uow, discharge.id, now)
    live = next((h for h in uow.handoffs.for_discharge(discharge.id) if domain.is_live_handoff(h.status)), None)
    team = live.team_org_id if live else None
    followups = plan_followups(
        uow,
        discharge,
        facts.followups,
        source_id=cmd.message_id,
        handoff_id=live.id if live else None,
        team_org_id=team,
        now=now,
        policy=policy,
    )
    tasks = ([handoff_task(live, discharge, facts.letter)] if live else []) + [
        followup_task(f, discharge, team) for f in followups
    ]
    _correct(uow, cmd, discharge, tasks, policy, now)
    notes = [f"{cmd.event_type.value} accepted; open follow-up items replaced"]
    return _answer(uow, cmd, discharge.id, tasks, notes, now)


def _cancel(uow: DischargeUnitOfWork, cmd: CancelDischarge, patient_key: str, deps: Deps) -> Response:
    now = deps.clock()
    discharge = _original(uow, cmd)
    check_same_patient(discharge.patient_key, patient_key)
    discharge.status = DischargeStatus.CANCELLED
    discharge.updated_at = now
    for handoff in uow.handoffs.for_discharge(discharge.id):
        if domain.is_live_handoff(handoff.status):
            handoff.status = HandoffStatus.CANCELLED
            handoff.business_status = "discharge-cancelled"
            handoff.updated_at = now
            uow.timers.cancel_for(handoff.id, now)
    cancel_open_followups(uow, discharge.id, now)
    cancel_orientation(uow, discharge.id, now)
    _correct(uow, cmd, discharge, [], deps.policy, now)
    notes = [f"{cmd.event_type.value} accepted; the handoff and follow-up plan are cancelled"]
    return _answer(uow, cmd, discharge.id, [], notes, now)


# --- the steps --------------------------------------------------------------------------------------------


def _stored_payload(facts: DischargeFacts) -> dict[str, Any]:
    """The FHIR the team is entitled to, kept to answer corrections and reads."""
    return {
        "encounter": facts.encounter,
        "resources": list(facts.resources),
        "letter": facts.letter,
        "referent": facts.referent.to_json(),
    }


def _new_discharge(
    cmd: RecordDischarge,
    patient_key: str,
    met: frozenset[str],
    complex_case: bool,
    readmission: bool,
    now: datetime,
) -> DischargeRow:
    facts = cmd.facts
    return DischargeRow(
        id=domain.derived_id(cmd.message_id, "discharge"),
        message_id=cmd.message_id,
        hospital_org_id=facts.hospital_org_id,
        encounter_key=facts.encounter_key,
        patient_key=patient_key,
        patient_system=facts.patient.system,
        patient_value=facts.patient.value,
        status=DischargeStatus.RECORDED,
        started_at=facts.started_at,
        discharged_at=facts.discharged_at,
        postal_code=facts.postal_code,
        commune=facts.commune,
        birth_date=facts.birth_date.isoformat() if facts.birth_date else None,
        flags=sorted(met),
        complex_case=complex_case,
        readmission=readmission,
        payload=_stored_payload(facts),
        recipients=[],
        recorded_at=now,
        updated_at=now,
    )


def _request_handoff(
    uow: DischargeUnitOfWork, discharge: DischargeRow, team: str, now: datetime, policy: Policy
) -> HandoffRow:
    handoff = HandoffRow(
        id=domain.derived_id(discharge.message_id, "handoff"),
        discharge_id=discharge.id,
        patient_key=discharge.patient_key,
        hospital_org_id=discharge.hospital_org_id,
        team_org_id=team,
        status=HandoffStatus.REQUESTED,
        hospital_referent=discharge.payload["referent"],
        requested_at=now,
        expires_at=now + policy.handoff_expiry,
        updated_at=now,
    )
    uow.handoffs.add(handoff)
    schedule(uow, TimerKind.HANDOFF_EXPIRY, handoff.id, 0, handoff.expires_at)
    return handoff


def _original(uow: DischargeUnitOfWork, cmd: DischargeMessage) -> DischargeRow:
    original = uow.discharges.by_encounter(cmd.facts.hospital_org_id, cmd.facts.encounter_key)
    if original is None:
        domain.refuse_without_original(cmd.facts.encounter_key, cmd.event_type)
    domain.check_not_cancelled(cmd.facts.encounter_key, original.status)
    return original


def _correct(
    uow: DischargeUnitOfWork,
    cmd: DischargeMessage,
    discharge: DischargeRow,
    tasks: list[dict[str, Any]],
    policy: Policy,
    now: datetime,
) -> None:
    """A correction or cancellation goes to the original's recipients, nobody else, at the same detail."""
    event = cmd.event_type
    recipients = domain.correction_recipients(recipients_from_json(discharge.recipients), event)
    _notify_discharge(uow, cmd, discharge, recipients, event, tasks, policy, now)
    domain_event(uow, event.value, cmd.message_id, discharge, recipients=[r.organisation_id for r in recipients])


def _notify_discharge(
    uow: DischargeUnitOfWork,
    cmd: DischargeMessage | None,
    discharge: DischargeRow,
    recipients: list[Recipient],
    event: EventType,
    tasks: list[dict[str, Any]],
    policy: Policy,
    now: datetime,
) -> list[Recipient]:
    """`cmd` is the hospital's message being handled; None when the discharge stored earlier is told again (its
    notification ids derive from the discharge's own message, so a replay creates nothing new)."""
    message_id = cmd.message_id if cmd else discharge.message_id
    header = cmd.request_header if cmd else {}
    # The hospital's encounter number reaches full-detail recipients only; the others get an opaque reference.
    return notify(
        uow,
        recipients,
        event,
        source_id=message_id,
        about=about(discharge, f"Discharge/{discharge.id}", subject=discharge.encounter_key),
        sender=discharge.hospital_org_id,
        occurred_at=discharge.discharged_at,
        now=now,
        full=lambda: _full_bundle(event, discharge, tasks, policy, message_id, header),
    )


def _full_bundle(
    event: EventType,
    discharge: DischargeRow,
    tasks: list[dict[str, Any]],
    policy: Policy,
    message_id: str,
    request_header: dict[str, Any],
) -> dict[str, Any]:
    stored = discharge.payload
    return message_bundle(
        event,
        source_endpoint=policy.source_endpoint,
        focus=[stored["encounter"]],
        sender={"identifier": {"system": FINESS, "value": discharge.hospital_org_id}},
        extra_resources=[*stored["resources"], *tasks],
        message_id=domain.derived_id(message_id, "bundle", event.value),
        sender_event=request_header.get("eventCoding"),
    )


def _answer(
    uow: DischargeUnitOfWork,
    cmd: DischargeMessage,
    discharge_id: str,
    tasks: list[dict[str, Any]],
    notes: list[str],
    now: datetime,
    warnings: list[dict[str, Any]] | None = None,
) -> Response:
    """The response message (the Tasks ride along), stored for replays and audited."""
    issues = [*(warnings or []), *(issue("information", "informational", note) for note in notes)]
    if cmd.facts.patient.system not in INS_SYSTEMS:
        issues.append(local_only_issue())
    response = message_response(
        cmd.message_id,
        cmd.request_header,
        "ok",
        outcome_from_issues(issues),
        message_id=domain.derived_id(cmd.message_id, "response"),
        timestamp=domain.fhir_instant(now),
    )
    # The Tasks ride along without their owner: an intake answer never names another organisation.
    response["entry"].extend({"fullUrl": f"urn:uuid:{t['id']}", "resource": without_owner(t)} for t in tasks)
    Bundle.model_validate(response)
    uow.messages.add(
        DischargeMessageRow(
            message_id=cmd.message_id,
            fingerprint=cmd.fingerprint,
            event_type=cmd.event_type.value,
            hospital_org_id=cmd.caller_org_id,
            discharge_id=discharge_id,
            response=response,
            received_at=now,
        )
    )
    uow.audit.record(
        cmd.event_type.value,
        outcome="ok",
        organisation_id=cmd.caller_org_id,
        role=Role.HOSPITAL.value,
        resource=f"discharge/{discharge_id}",
        detail={"message_id": cmd.message_id},
    )
    return response
