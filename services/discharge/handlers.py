"""One function per command or event; each takes the unit of work and an injectable clock."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import date, datetime
from typing import Any

from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from services.discharge import domain
from services.discharge.adapters.orm import (
    CareTeamMirrorRow,
    DischargeMessageRow,
    DischargeRow,
    FollowupRow,
    HandoffRow,
    TerritoryMirrorRow,
    TimerRow,
)
from services.discharge.domain import (
    AcceptHandoff,
    CancelDischarge,
    CancelHandoff,
    CompleteFollowup,
    DeclineHandoff,
    DischargeStatus,
    FollowupStatus,
    HandoffStatus,
    MirrorCareTeam,
    MirrorState,
    MirrorTerritory,
    Policy,
    RecordDischarge,
    ReviseDischarge,
    TerritoryState,
    TimerKind,
)
from services.discharge.resources import followup_task, handoff_task
from services.discharge.uow import DischargeUnitOfWork
from shared.errors import Conflict, NotFound, Unprocessable
from shared.events import TOPIC_DISCHARGE, EventType, Role
from shared.fhir.builders import message_bundle, message_response
from shared.fhir.models import Bundle
from shared.fhir.outcome import issue, outcome_from_issues
from shared.identifiers import FINESS
from shared.minimise import minimise
from shared.routing import Recipient, route

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


# --- helpers shared by the handlers ---------------------------------------------------------------------


def _mirror_state(uow: DischargeUnitOfWork, patient_key: str) -> MirrorState | None:
    row = uow.mirror.careteam(patient_key)
    if row is None:
        return None
    return MirrorState(
        team_org_id=row.team_org_id,
        team_active=row.status == "active" and bool(row.team_org_id),
        referent=row.referent,
        consent_opposed=row.consent_opposed,
        dac_case_open=row.dac_case_open,
        dac_org_id=row.dac_org_id,
        postal_code=row.postal_code,
    )


def _territory_state(uow: DischargeUnitOfWork, postal_code: str | None) -> TerritoryState | None:
    row = uow.mirror.territory(postal_code)
    return TerritoryState(row.cpts_org_id, row.dac_org_id) if row else None


def _context(
    uow: DischargeUnitOfWork,
    discharge: DischargeRow,
    *,
    team_org_id: str | None = None,
    pin_team: bool = False,
    handoff_failed: bool = False,
    escalation_level: int = 0,
):
    mirror = _mirror_state(uow, discharge.patient_key)
    postal = discharge.postal_code or (mirror.postal_code if mirror else None)
    ctx = domain.patient_context(
        mirror=mirror,
        territory=_territory_state(uow, postal),
        hospital_org_id=discharge.hospital_org_id,
        complex_case=discharge.complex_case,
        team_org_id=team_org_id,
        handoff_failed=handoff_failed,
        escalation_level=escalation_level,
    )
    if pin_team and team_org_id is None:
        # The team that held the patient has let go: do not fall back on the mirror's (same) team.
        from dataclasses import replace

        ctx = replace(ctx, team_org_id=None)
    return ctx


def _minimal(
    discharge: DischargeRow, event: EventType, occurred_at: datetime, now: datetime
) -> dict[str, Any]:
    return minimise(
        {},
        event_type=event,
        patient_key=discharge.patient_key,
        commune=discharge.commune,
        birth_date=date.fromisoformat(discharge.birth_date) if discharge.birth_date else None,
        occurred_at=domain.fhir_instant(occurred_at),
        recorded_at=domain.fhir_instant(now),
    )


def _notify(
    uow: DischargeUnitOfWork,
    recipients: Iterable[Recipient],
    event: EventType,
    *,
    source_id: str,
    discharge: DischargeRow,
    sender: str | None,
    subject: str,
    full: dict[str, Any],
    minimal: dict[str, Any],
) -> list[Recipient]:
    from shared.minimise import shape_for

    sent = []
    for recipient in recipients:
        data = domain.notification_data(
            recipient,
            event,
            patient_key=discharge.patient_key,
            sender=sender,
            subject=subject,
            payload=shape_for(recipient, full, minimal),
        )
        uow.outbox.add(
            recipient.topic,
            recipient.organisation_id,
            event.value,
            data,
            message_id=domain.notification_id(source_id, recipient, event),
        )
        sent.append(recipient)
    return sent


def _domain_event(
    uow: DischargeUnitOfWork, event: str, source_id: str, discharge: DischargeRow, **extra: Any
) -> None:
    # Domain topics carry that something happened, never the clinical why.
    data = {
        "event": event,
        "discharge_id": discharge.id,
        "patient_key": discharge.patient_key,
        "hospital": discharge.hospital_org_id,
        "encounter": discharge.encounter_key,
        **extra,
    }
    uow.outbox.add(
        TOPIC_DISCHARGE,
        discharge.patient_key,
        event,
        data,
        message_id=domain.derived_id(source_id, "domain", event),
    )


def _task_bundle(
    event: EventType, task: dict[str, Any], policy: Policy, sender_org: str | None, extra=()
) -> dict[str, Any]:
    sender = (
        {"identifier": {"system": domain.ORGANISATION_SYSTEM, "value": sender_org}} if sender_org else None
    )
    return message_bundle(
        event, source_endpoint=policy.source_endpoint, focus=[task], sender=sender, extra_resources=extra
    )


def _schedule(uow: DischargeUnitOfWork, kind: str, subject_id: str, level: int, due_at: datetime) -> None:
    uow.timers.add(
        TimerRow(
            id=domain.derived_id(subject_id, kind, str(level)),
            kind=kind,
            subject_id=subject_id,
            level=level,
            due_at=due_at,
        )
    )


def _declined_teams(uow: DischargeUnitOfWork, discharge_id: str) -> set[str]:
    failed = {HandoffStatus.REJECTED, HandoffStatus.EXPIRED}
    return {h.team_org_id for h in uow.handoffs.for_discharge(discharge_id) if h.status in failed}


def followup_team(uow: DischargeUnitOfWork, item: FollowupRow, discharge: DischargeRow) -> str | None:
    """Who owns a follow-up item: the team handed the patient, else the current team unless it let go."""
    if item.team_org_id:
        return item.team_org_id
    mirror = _mirror_state(uow, discharge.patient_key)
    if mirror and mirror.team_active and mirror.team_org_id not in _declined_teams(uow, discharge.id):
        return mirror.team_org_id
    return None


# --- intake -----------------------------------------------------------------------------------------------


def process_discharge_message(
    uow: DischargeUnitOfWork,
    cmd: RecordDischarge | ReviseDischarge | CancelDischarge,
    *,
    patient_key: str,
    clock: Clock,
    policy: Policy,
) -> dict[str, Any]:
    """Any discharge message: a replay gets the stored answer, a new one is recorded, revised or cancelled."""
    domain.check_hospital(cmd.caller_org_id, cmd.facts.hospital_org_id)
    handler = {
        RecordDischarge: record_discharge,
        ReviseDischarge: revise_discharge,
        CancelDischarge: cancel_discharge,
    }[type(cmd)]
    for _attempt in range(2):
        with uow:
            stored = uow.messages.get(cmd.message_id)
            if stored is not None:
                domain.check_replay(stored.fingerprint, cmd.fingerprint, cmd.message_id)
                return stored.response
            response = handler(uow, cmd, patient_key=patient_key, clock=clock, policy=policy)
            try:
                uow.commit()
            except IntegrityError:
                uow.rollback()
                continue  # a concurrent delivery won: the next pass answers from what it stored
            return response
    raise Conflict(
        f"message {cmd.message_id} is being processed concurrently; retry", expression=["Bundle.id"]
    )


def _response(
    cmd, discharge_id: str, tasks: list[dict[str, Any]], notes: list[str], now: datetime
) -> dict[str, Any]:
    issues = [issue("information", "informational", note) for note in notes] or [
        issue("information", "informational", f"{cmd.event_type.value} accepted")
    ]
    response = message_response(
        cmd.message_id,
        cmd.request_header,
        "ok",
        outcome_from_issues(issues),
        message_id=domain.derived_id(cmd.message_id, "response"),
        timestamp=domain.fhir_instant(now),
    )
    # The Tasks ride along so the hospital learns their ids without a search.
    response["entry"].extend({"fullUrl": f"urn:uuid:{t['id']}", "resource": t} for t in tasks)
    Bundle.model_validate(response)
    return response


def _store_message(
    uow: DischargeUnitOfWork, cmd, discharge_id: str, response: dict[str, Any], now: datetime
) -> None:
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


def _full_bundle(
    event: EventType, discharge: DischargeRow, tasks: list[dict[str, Any]], policy: Policy, message_id: str
) -> dict[str, Any]:
    stored = discharge.payload
    return message_bundle(
        event,
        source_endpoint=policy.source_endpoint,
        focus=[stored["encounter"]],
        sender={"identifier": {"system": FINESS, "value": discharge.hospital_org_id}},
        extra_resources=[*stored["resources"], *tasks],
        message_id=domain.derived_id(message_id, "bundle", event.value),
    )


def _create_followups(
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
        # Both escalation levels are durable from the start: a restart between them loses nothing.
        _schedule(uow, TimerKind.FOLLOWUP_MISSED, row.id, 0, item.due_at)
        _schedule(uow, TimerKind.FOLLOWUP_MISSED, row.id, 1, item.due_at + policy.followup_grace)
        rows.append(row)
    return rows


def record_discharge(
    uow: DischargeUnitOfWork, cmd: RecordDischarge, *, patient_key: str, clock: Clock, policy: Policy
) -> dict[str, Any]:
    facts, now = cmd.facts, clock()
    existing = uow.discharges.by_encounter(facts.hospital_org_id, facts.encounter_key)
    if existing is not None:
        raise Conflict(
            f"encounter {facts.encounter_key} was already discharged (message {existing.message_id}); "
            "send revise-discharge or cancel-discharge to change it",
            expression=["Encounter.identifier"],
        )
    readmission = domain.is_readmission(
        (domain.as_utc(d) for d in uow.discharges.discharge_times(patient_key)),
        facts.started_at or facts.discharged_at,
        policy.readmission_window,
    )
    met, complex_case = domain.complexity(facts.flags, readmission, policy.criteria)
    discharge_id = domain.derived_id(cmd.message_id, "discharge")
    discharge = DischargeRow(
        id=discharge_id,
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
        payload={
            "encounter": facts.encounter,
            "resources": list(facts.resources),
            "letter": facts.letter,
            "referent": facts.referent.to_json(),
        },
        recipients=[],
        recorded_at=now,
        updated_at=now,
    )
    ctx = _context(uow, discharge)
    team = ctx.team_org_id
    discharge.team_org_id = team
    notes: list[str] = []
    handoff = None
    if team:
        handoff = HandoffRow(
            id=domain.derived_id(cmd.message_id, "handoff"),
            discharge_id=discharge_id,
            patient_key=patient_key,
            hospital_org_id=facts.hospital_org_id,
            team_org_id=team,
            status=HandoffStatus.REQUESTED,
            hospital_referent=facts.referent.to_json(),
            requested_at=now,
            expires_at=now + policy.handoff_expiry,
            updated_at=now,
        )
        uow.handoffs.add(handoff)
        _schedule(uow, TimerKind.HANDOFF_EXPIRY, handoff.id, 0, handoff.expires_at)
        notes.append(
            f"handoff Task/{handoff.id} requested from team {team}, "
            f"due by {domain.fhir_instant(handoff.expires_at)}"
        )
    else:
        notes.append("no treating team is known for this patient: the CPTS is asked to find one")
    followups = _create_followups(
        uow,
        discharge,
        facts.followups,
        source_id=cmd.message_id,
        handoff_id=handoff.id if handoff else None,
        team_org_id=team,
        now=now,
        policy=policy,
    )
    if readmission:
        notes.append("readmission within 30 days of an earlier discharge: counted as a complexity criterion")
    if complex_case:
        notes.append("complex situation by criteria: " + ", ".join(sorted(met)))
    if not facts.letter:
        notes.append("no liaison letter (DocumentReference) in the message: send it with a revise-discharge")
    tasks = ([handoff_task(handoff, discharge, facts.letter)] if handoff else []) + [
        followup_task(f, discharge, team) for f in followups
    ]
    event = EventType.DISCHARGE_RECORDED
    recipients = route(event, ctx)
    _notify(
        uow,
        recipients,
        event,
        source_id=cmd.message_id,
        discharge=discharge,
        sender=facts.hospital_org_id,
        subject=facts.encounter_key,
        full=_full_bundle(event, discharge, tasks, policy, cmd.message_id),
        minimal=_minimal(discharge, event, facts.discharged_at, now),
    )
    discharge.recipients = domain.recipients_to_json(recipients)
    uow.discharges.add(discharge)
    if handoff:
        proposed = EventType.HANDOFF_PROPOSED
        task = tasks[0]
        _notify(
            uow,
            route(proposed, _context(uow, discharge, team_org_id=team)),
            proposed,
            source_id=cmd.message_id,
            discharge=discharge,
            sender=facts.hospital_org_id,
            subject=handoff.id,
            full=_task_bundle(proposed, task, policy, facts.hospital_org_id),
            minimal=_minimal(discharge, proposed, now, now),
        )
    _domain_event(
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
    response = _response(cmd, discharge_id, tasks, notes, now)
    _store_message(uow, cmd, discharge_id, response, now)
    return response


def _original(uow: DischargeUnitOfWork, cmd) -> DischargeRow:
    original = uow.discharges.by_encounter(cmd.facts.hospital_org_id, cmd.facts.encounter_key)
    if original is None:
        raise Unprocessable(
            f"no discharge is known for encounter {cmd.facts.encounter_key}: "
            f"a {cmd.event_type.value} needs the original first",
            expression=["Encounter.identifier"],
        )
    if original.status == DischargeStatus.CANCELLED:
        raise Conflict(
            f"the discharge of encounter {cmd.facts.encounter_key} was cancelled",
            expression=["Encounter.identifier"],
        )
    return original


def _cancel_open_followups(uow: DischargeUnitOfWork, discharge_id: str, now: datetime) -> None:
    for item in uow.followups.for_discharge(discharge_id):
        if item.status == FollowupStatus.REQUESTED:
            item.status = FollowupStatus.CANCELLED
            item.updated_at = now
            uow.timers.cancel_for(item.id, now)


def revise_discharge(
    uow: DischargeUnitOfWork, cmd: ReviseDischarge, *, patient_key: str, clock: Clock, policy: Policy
) -> dict[str, Any]:
    facts, now = cmd.facts, clock()
    discharge = _original(uow, cmd)
    met, complex_case = domain.complexity(facts.flags, discharge.readmission, policy.criteria)
    discharge.status = DischargeStatus.CORRECTED
    discharge.discharged_at = facts.discharged_at
    discharge.flags = sorted(met)
    discharge.complex_case = complex_case
    discharge.payload = {
        "encounter": facts.encounter,
        "resources": list(facts.resources),
        "letter": facts.letter,
        "referent": facts.referent.to_json(),
    }
    discharge.updated_at = now
    # The new plan replaces what is still open; what the team already did stays done.
    _cancel_open_followups(uow, discharge.id, now)
    handoffs = uow.handoffs.for_discharge(discharge.id)
    live = next((h for h in handoffs if h.status in (HandoffStatus.REQUESTED, HandoffStatus.ACCEPTED)), None)
    team = live.team_org_id if live else None
    followups = _create_followups(
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
    event = cmd.event_type
    recipients = domain.correction_recipients(domain.recipients_from_json(discharge.recipients), event)
    _notify(
        uow,
        recipients,
        event,
        source_id=cmd.message_id,
        discharge=discharge,
        sender=facts.hospital_org_id,
        subject=facts.encounter_key,
        full=_full_bundle(event, discharge, tasks, policy, cmd.message_id),
        minimal=_minimal(discharge, event, facts.discharged_at, now),
    )
    _domain_event(
        uow, event.value, cmd.message_id, discharge, recipients=[r.organisation_id for r in recipients]
    )
    response = _response(
        cmd, discharge.id, tasks, [f"{event.value} accepted; open follow-up items replaced"], now
    )
    _store_message(uow, cmd, discharge.id, response, now)
    return response


def cancel_discharge(
    uow: DischargeUnitOfWork, cmd: CancelDischarge, *, patient_key: str, clock: Clock, policy: Policy
) -> dict[str, Any]:
    now = clock()
    discharge = _original(uow, cmd)
    discharge.status = DischargeStatus.CANCELLED
    discharge.updated_at = now
    for handoff in uow.handoffs.for_discharge(discharge.id):
        if handoff.status in (HandoffStatus.REQUESTED, HandoffStatus.ACCEPTED):
            handoff.status = HandoffStatus.CANCELLED
            handoff.business_status = "discharge-cancelled"
            handoff.updated_at = now
            uow.timers.cancel_for(handoff.id, now)
    _cancel_open_followups(uow, discharge.id, now)
    event = cmd.event_type
    recipients = domain.correction_recipients(domain.recipients_from_json(discharge.recipients), event)
    _notify(
        uow,
        recipients,
        event,
        source_id=cmd.message_id,
        discharge=discharge,
        sender=discharge.hospital_org_id,
        subject=discharge.encounter_key,
        full=_full_bundle(event, discharge, [], policy, cmd.message_id),
        minimal=_minimal(discharge, event, discharge.discharged_at, now),
    )
    _domain_event(
        uow, event.value, cmd.message_id, discharge, recipients=[r.organisation_id for r in recipients]
    )
    response = _response(
        cmd, discharge.id, [], [f"{event.value} accepted; the handoff and follow-up plan are cancelled"], now
    )
    _store_message(uow, cmd, discharge.id, response, now)
    return response


# --- the handoff Task -----------------------------------------------------------------------------------


def _handoff_for_team(uow: DischargeUnitOfWork, task_id: str, team_org_id: str) -> HandoffRow:
    handoff = uow.handoffs.get(task_id, for_update=True)
    if handoff is None or handoff.team_org_id != team_org_id:
        raise NotFound(f"Task/{task_id} is not known")  # never confirm a Task exists to a stranger
    return handoff


def _handoff_transition(
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
    handoff.status = domain.next_handoff_status(handoff.status, action, handoff.id)
    handoff.decided_at = now
    handoff.updated_at = now
    if reason:
        handoff.reason = reason
    discharge = uow.discharges.get(handoff.discharge_id)
    if action == "accept":
        mirror = _mirror_state(uow, discharge.patient_key)
        handoff.team_referent = mirror.referent if mirror else None
    if action in ("decline", "expire"):
        handoff.business_status = "declined" if action == "decline" else "expired"
        # The team let go: its follow-up items wait for the next team the CPTS finds.
        for item in uow.followups.for_discharge(discharge.id):
            if item.team_org_id == handoff.team_org_id and item.status == FollowupStatus.REQUESTED:
                item.team_org_id = None
                item.updated_at = now
    if action == "cancel":
        handoff.business_status = "cancelled-by-hospital"
    uow.timers.cancel_for(handoff.id, now, outcome="obsolete")
    task = handoff_task(handoff, discharge, (discharge.payload or {}).get("letter"))
    event = domain.HANDOFF_EVENTS[action]
    failed = action in ("decline", "expire")
    ctx = _context(uow, discharge, team_org_id=handoff.team_org_id, handoff_failed=failed)
    _notify(
        uow,
        route(event, ctx),
        event,
        source_id=source_id,
        discharge=discharge,
        sender=actor,
        subject=handoff.id,
        full=_task_bundle(event, task, policy, actor),
        minimal=_minimal(discharge, event, now, now),
    )
    _domain_event(uow, event.value, source_id, discharge, task=handoff.id, status=handoff.status)
    uow.audit.record(
        f"handoff.{action}",
        outcome="ok",
        organisation_id=actor,
        resource=f"Task/{handoff.id}",
        detail={"status": handoff.status},
    )
    return task


def accept_handoff(
    uow: DischargeUnitOfWork, cmd: AcceptHandoff, *, clock: Clock, policy: Policy
) -> dict[str, Any]:
    with uow:
        handoff = _handoff_for_team(uow, cmd.task_id, cmd.team_org_id)
        discharge = uow.discharges.get(handoff.discharge_id)
        if handoff.status == HandoffStatus.ACCEPTED:
            return handoff_task(handoff, discharge, discharge.payload.get("letter"))  # a retried accept
        task = _handoff_transition(
            uow,
            handoff,
            "accept",
            actor=cmd.team_org_id,
            now=clock(),
            policy=policy,
            source_id=f"{handoff.id}:accept",
        )
        uow.commit()
    return task


def decline_handoff(
    uow: DischargeUnitOfWork, cmd: DeclineHandoff, *, clock: Clock, policy: Policy
) -> dict[str, Any]:
    reason = domain.check_decline_reason(cmd.reason)
    with uow:
        handoff = _handoff_for_team(uow, cmd.task_id, cmd.team_org_id)
        discharge = uow.discharges.get(handoff.discharge_id)
        if handoff.status == HandoffStatus.REJECTED:
            return handoff_task(handoff, discharge, discharge.payload.get("letter"))
        task = _handoff_transition(
            uow,
            handoff,
            "decline",
            actor=cmd.team_org_id,
            now=clock(),
            policy=policy,
            source_id=f"{handoff.id}:decline",
            reason=reason,
        )
        uow.commit()
    return task


def cancel_handoff(
    uow: DischargeUnitOfWork, cmd: CancelHandoff, *, clock: Clock, policy: Policy
) -> dict[str, Any]:
    with uow:
        handoff = uow.handoffs.get(cmd.task_id, for_update=True)
        if handoff is None or handoff.hospital_org_id != cmd.hospital_org_id:
            raise NotFound(f"Task/{cmd.task_id} is not known")
        discharge = uow.discharges.get(handoff.discharge_id)
        if handoff.status == HandoffStatus.CANCELLED:
            return handoff_task(handoff, discharge, discharge.payload.get("letter"))
        task = _handoff_transition(
            uow,
            handoff,
            "cancel",
            actor=cmd.hospital_org_id,
            now=clock(),
            policy=policy,
            source_id=f"{handoff.id}:cancel",
            reason=cmd.reason,
        )
        uow.commit()
    return task


# --- follow-up items ------------------------------------------------------------------------------------


def complete_followup(uow: DischargeUnitOfWork, cmd: CompleteFollowup, *, clock: Clock) -> dict[str, Any]:
    with uow:
        item = uow.followups.get(cmd.task_id, for_update=True)
        discharge = uow.discharges.get(item.discharge_id) if item else None
        if item is None or followup_team(uow, item, discharge) != cmd.team_org_id:
            raise NotFound(f"Task/{cmd.task_id} is not known")
        if item.status == FollowupStatus.CANCELLED:
            raise Conflict(f"Task/{item.id} was cancelled by the hospital", expression=["Task.status"])
        if item.status != FollowupStatus.COMPLETED:
            now = clock()
            done_at = cmd.done_at or now
            if done_at > now:
                raise Unprocessable(
                    "a follow-up cannot be done in the future", expression=["Parameters.completedAt"]
                )
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
        task = followup_task(item, discharge, item.team_org_id)
        uow.commit()
    return task


# --- reads ------------------------------------------------------------------------------------------------


def read_task(uow: DischargeUnitOfWork, task_id: str, organisation_id: str) -> dict[str, Any]:
    """A Task for the hospital that sent it or the team it targets; anyone else gets 404."""
    with uow:
        handoff = uow.handoffs.get(task_id)
        if handoff is not None and organisation_id in (handoff.hospital_org_id, handoff.team_org_id):
            discharge = uow.discharges.get(handoff.discharge_id)
            return handoff_task(handoff, discharge, discharge.payload.get("letter"))
        item = uow.followups.get(task_id)
        if item is not None:
            discharge = uow.discharges.get(item.discharge_id)
            team = followup_team(uow, item, discharge)
            if organisation_id in (item.hospital_org_id, team):
                return followup_task(item, discharge, team)
    raise NotFound(f"Task/{task_id} is not known")


# --- durable timers ---------------------------------------------------------------------------------------


def fire_next_timer(uow: DischargeUnitOfWork, *, clock: Clock, policy: Policy, worker: str) -> str | None:
    """Fire the earliest due timer, effects and claim in one transaction; None when nothing is due.

    Returns the timer id this worker fired, or "" when another worker had claimed it first.
    """
    with uow:
        now = clock()
        timer = uow.timers.next_due(now)
        if timer is None:
            return None
        timer_id, kind, subject, level = timer.id, timer.kind, timer.subject_id, timer.level
        if not uow.timers.claim(timer_id, now, worker):
            uow.rollback()
            return ""
        fired = False
        try:
            if kind == TimerKind.HANDOFF_EXPIRY:
                fired = _expire_handoff(uow, subject, now=now, policy=policy, source_id=timer_id)
            elif kind == TimerKind.FOLLOWUP_MISSED:
                fired = _escalate_followup(uow, subject, level, now=now, policy=policy, source_id=timer_id)
            else:
                log.error("unknown timer kind %s (%s): marked obsolete", kind, timer_id)
        except (OperationalError, DBAPIError):
            raise  # the database is away: the timer stays due and is retried
        except Exception as exc:
            raise TimerFailed(timer_id) from exc
        if not fired:
            uow.timers.set_outcome(timer_id, "obsolete")
        uow.commit()
    return timer_id


class TimerFailed(Exception):
    def __init__(self, timer_id: str) -> None:
        super().__init__(f"timer {timer_id} failed")
        self.timer_id = timer_id


def set_timer_aside(uow: DischargeUnitOfWork, timer_id: str, *, clock: Clock, worker: str) -> None:
    with uow:
        uow.timers.claim(timer_id, clock(), worker, outcome="error")
        uow.commit()


def _expire_handoff(
    uow: DischargeUnitOfWork, task_id: str, *, now: datetime, policy: Policy, source_id: str
) -> bool:
    handoff = uow.handoffs.get(task_id, for_update=True)
    if handoff is None or handoff.status != HandoffStatus.REQUESTED:
        return False
    _handoff_transition(uow, handoff, "expire", actor=None, now=now, policy=policy, source_id=source_id)
    return True


def _escalate_followup(
    uow: DischargeUnitOfWork, task_id: str, level: int, *, now: datetime, policy: Policy, source_id: str
) -> bool:
    item = uow.followups.get(task_id, for_update=True)
    if item is None or item.status != FollowupStatus.REQUESTED:
        return False
    discharge = uow.discharges.get(item.discharge_id)
    team = followup_team(uow, item, discharge)
    item.escalation_level = level
    item.updated_at = now
    event = EventType.FOLLOWUP_MISSED
    ctx = _context(uow, discharge, team_org_id=team, pin_team=True, escalation_level=level)
    task = followup_task(item, discharge, team)
    recipients = _notify(
        uow,
        route(event, ctx),
        event,
        source_id=source_id,
        discharge=discharge,
        sender=None,
        subject=item.id,
        full=_task_bundle(event, task, policy, None),
        minimal=_minimal(discharge, event, item.due_at, now),
    )
    _domain_event(
        uow,
        event.value,
        source_id,
        discharge,
        task=item.id,
        level=level,
        recipients=[r.organisation_id for r in recipients],
    )
    uow.audit.record(
        "followup.escalate",
        outcome="ok",
        resource=f"Task/{item.id}",
        detail={"level": level, "recipients": [r.organisation_id for r in recipients]},
    )
    return True


# --- the care-team mirror ---------------------------------------------------------------------------------


def mirror_careteam(uow: DischargeUnitOfWork, cmd: MirrorCareTeam, *, clock: Clock) -> None:
    """Store the patient's latest coordination context; an older message than the one stored is ignored."""
    data = cmd.data
    patient_key = data.get("patient_key")
    if not patient_key or not isinstance(patient_key, str):
        raise ValueError("careteam.changed without a patient_key")
    row = uow.mirror.careteam(patient_key)
    if row is not None and row.source_time and cmd.sent_at and cmd.sent_at < row.source_time:
        return
    if row is None:
        row = CareTeamMirrorRow(patient_key=patient_key, status="inactive", updated_at=clock())
        uow.mirror.add(row)
    row.careteam_id = data.get("careteam_id")
    row.team_org_id = data.get("team_org_id")
    row.status = str(data.get("status") or "inactive")
    row.referent = data.get("referent")
    row.consent_opposed = bool(data.get("consent_opposed"))
    row.dac_case_open = bool(data.get("dac_case_open"))
    row.dac_org_id = data.get("dac_org_id")
    row.postal_code = data.get("postal_code")
    row.source_time = cmd.sent_at or row.source_time
    row.updated_at = clock()


def mirror_territory(uow: DischargeUnitOfWork, cmd: MirrorTerritory, *, clock: Clock) -> None:
    postal_code = cmd.data.get("postal_code")
    if not postal_code or not isinstance(postal_code, str):
        raise ValueError("territory.changed without a postal_code")
    row = uow.mirror.territory(postal_code)
    if row is None:
        row = TerritoryMirrorRow(postal_code=postal_code, updated_at=clock())
        uow.mirror.add(row)
    row.cpts_org_id = cmd.data.get("cpts_org_id")
    row.dac_org_id = cmd.data.get("dac_org_id")
    row.updated_at = clock()
