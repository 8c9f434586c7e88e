"""The treating-team registry (ANS Cercle de soins): enrolment, its end, the referent's periods."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError

from services.admissions import domain
from services.admissions.adapters.orm import CareTeamParticipantRow, CareTeamRow, TeamChangeRow
from services.admissions.commands import (
    AnswerTeamChange,
    ChangeReferent,
    EndEnrolment,
    EnrolPatient,
    ExpireTeamChanges,
)
from services.admissions.deps import Deps
from services.admissions.handlers.context import (
    careteam_changed,
    instant,
    learn_postal_code,
    notify,
    patient_context,
)
from services.admissions.uow import AdmissionsUnitOfWork
from services.admissions.views import (
    CareTeamView,
    EnrolmentRecorded,
    own_careteam,
    render,
    team_change_for_current_team,
    team_change_for_requester,
    team_change_task,
)
from shared.carecircle import CircleFacts, Purpose, allows, not_found_text
from shared.contracts import About
from shared.errors import Conflict, NotFound, TooManyRequests, Unprocessable
from shared.events import EventType, Role
from shared.fhir.builders import RELAIS_ENDPOINT, message_bundle
from shared.routing import route


def _participant_row(careteam_id: str, p: domain.Participant, now: datetime) -> CareTeamParticipantRow:
    return CareTeamParticipantRow(
        careteam_id=careteam_id,
        role=p.role,
        member_system=p.member_system,
        member_value=p.member_value,
        member_display=p.member_display,
        telecom=list(p.telecom) or None,
        period_start=p.start or now,
        period_end=p.end,
    )


def enrol_patient(cmd: EnrolPatient, uow: AdmissionsUnitOfWork, deps: Deps) -> EnrolmentRecorded:
    """Enrol the patient; if another team treats them, record a change-of-team request that team answers (or
    that expires to this team). The caller cannot tell which happened from the answer."""
    key = deps.pseudonymise(cmd.patient)
    for _attempt in range(2):
        with uow:
            now = deps.clock()
            current = uow.careteams.active_for_patient(key)
            if current is not None and current.team_org_id == cmd.team_org_id:
                return EnrolmentRecorded(current.id)  # already this team's patient: enrolling again is a no-op
            pending = uow.team_changes.pending_by(key, cmd.team_org_id)
            if pending is not None:
                return EnrolmentRecorded(pending.careteam_id)  # the same request again
            if current is not None:
                _check_quiet_period(uow, key, cmd.team_org_id, now, deps.settings.team_change_quiet_hours)
            team = CareTeamRow(
                id=str(uuid.uuid4()),
                patient_key=key,
                subject_system=cmd.patient.system,
                subject_value=cmd.patient.value,
                team_org_id=cmd.team_org_id,
                name=cmd.name,
                status="active" if current is None else "proposed",
                started_at=now,
                version=1,
            )
            try:
                uow.careteams.add(team)
                uow.careteams.flush()  # the one-active-team index may refuse it here already
                for p in cmd.participants:
                    uow.careteams.add(_participant_row(team.id, p, now))
                if current is None:
                    learn_postal_code(uow, key, cmd.postal_code, now)
                    careteam_changed(uow, key, "enrolled", now)
                else:
                    expiry = timedelta(hours=deps.settings.team_change_expiry_hours)
                    change = TeamChangeRow(
                        id=str(uuid.uuid4()),
                        patient_key=key,
                        careteam_id=team.id,
                        to_team_org_id=cmd.team_org_id,
                        status=ChangeStatus.REQUESTED,
                        requested_at=now,
                        expires_at=now + expiry,
                    )
                    uow.team_changes.add(change)
                    _tell_current_team(uow, change, current, now)
                uow.commit()
            except IntegrityError:
                uow.rollback()
                continue  # another team was enrolled meanwhile: the next pass records a request to it
            return EnrolmentRecorded(team.id)
    raise Conflict("the patient's enrolment is changing concurrently; retry", expression=["CareTeam.subject"])


def _check_quiet_period(uow: AdmissionsUnitOfWork, key: str, team_org_id: str, now: datetime, hours: float) -> None:
    """A team whose request for this patient was declined (or withdrawn) asks again only after the quiet period:
    429 with Retry-After, naming neither the patient nor the current team."""
    quiet = timedelta(hours=hours)
    turned_down = uow.team_changes.last_turned_down(key, team_org_id, now - quiet)
    if turned_down is None or turned_down.decided_at is None:
        return
    decided = turned_down.decided_at
    decided = decided if decided.tzinfo else decided.replace(tzinfo=UTC)  # SQLite reads back naive UTC
    wait = max(1, math.ceil((decided + quiet - now).total_seconds()))
    raise TooManyRequests(
        "your change-of-team request for this patient was turned down recently: ask again after the quiet period "
        f"({hours:g} h)",
        retry_after=wait,
    )


def _tell_current_team(uow: AdmissionsUnitOfWork, change: TeamChangeRow, current: CareTeamRow, now: datetime) -> None:
    """The team that must answer hears of the request on its feed; nobody else does."""
    event = EventType.CARETEAM_CHANGE_REQUESTED
    task = team_change_task(change, current)
    reference = f"Task/{change.id}"

    def full(message_id: str) -> dict[str, Any]:
        return message_bundle(
            event, source_endpoint=RELAIS_ENDPOINT, focus=[task], message_id=message_id, timestamp=instant(now)
        )

    notify(
        uow,
        route(event, patient_context(uow, change.patient_key, None, None)),
        event,
        source_id=change.id,
        about=About(patient_key=change.patient_key, reference=reference),
        sender=change.to_team_org_id,
        occurred_at=instant(now),
        now=now,
        full=full,
    )


class ChangeStatus:
    REQUESTED = "requested"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    EXPIRED = "expired"
    RELEASED = "released"  # the current team ended its enrolment while the request waited


def _end_team(uow: AdmissionsUnitOfWork, team: CareTeamRow, now: datetime) -> None:
    team.status = "inactive"
    team.ended_at = now
    team.version += 1
    for p in uow.careteams.participants(team.id):
        if p.period_end is None:
            p.period_end = now
            uow.careteams.add(p)
    uow.careteams.add(team)
    uow.careteams.flush()  # the old team is inactive before the new one becomes active (one-active index)


def _settle(uow: AdmissionsUnitOfWork, change: TeamChangeRow, outcome: str, by: str, now: datetime) -> None:
    """Close a request: hand the patient over (accepted, expired, released) or end the proposal (declined)."""
    proposed = uow.careteams.get(change.careteam_id)
    change.status, change.decided_at, change.decided_by = outcome, now, by
    uow.team_changes.add(change)
    if proposed is None or proposed.status != "proposed":
        return
    if outcome == ChangeStatus.DECLINED:
        _end_team(uow, proposed, now)
        return
    current = uow.careteams.active_for_patient(change.patient_key)
    if current is not None:
        _end_team(uow, current, now)
    proposed.status = "active"
    proposed.started_at = now
    proposed.version += 1
    uow.careteams.add(proposed)
    careteam_changed(uow, change.patient_key, "team-changed", now)


def answer_team_change(cmd: AnswerTeamChange, uow: AdmissionsUnitOfWork, deps: Deps) -> dict[str, Any]:
    """Only the patient's current treating team answers; anyone else (the requester too) gets the one 404."""
    with uow:
        change = uow.team_changes.get(cmd.change_id)
        current = uow.careteams.active_for_patient(change.patient_key) if change is not None else None
        facts = CircleFacts(team_org_id=current.team_org_id if current else None)
        if change is None or not allows(Role.TEAM, cmd.team_org_id, facts, Purpose.ANSWER_TEAM_CHANGE):
            if change is not None and change.decided_by == cmd.team_org_id:
                return team_change_for_requester(change)  # answering twice: the first answer stands
            raise NotFound(not_found_text(f"team-change {cmd.change_id}"))
        if change.status != ChangeStatus.REQUESTED:
            raise NotFound(not_found_text(f"team-change {cmd.change_id}"))
        now = deps.clock()
        _settle(uow, change, ChangeStatus.ACCEPTED if cmd.accept else ChangeStatus.DECLINED, cmd.team_org_id, now)
        view = team_change_for_current_team(change, current)
        uow.commit()
        return view


def expire_team_changes(cmd: ExpireTeamChanges, uow: AdmissionsUnitOfWork, deps: Deps) -> int:
    """Unanswered requests past their deadline go to the requesting team; returns how many were handed over."""
    with uow:
        now = deps.clock()
        due = uow.team_changes.due(now, cmd.limit)
        for change in due:
            _settle(uow, change, ChangeStatus.EXPIRED, "relais", now)
        uow.commit()
        return len(due)


def end_enrolment(cmd: EndEnrolment, uow: AdmissionsUnitOfWork, deps: Deps) -> CareTeamView:
    with uow:
        team = own_careteam(uow, cmd.team_org_id, cmd.careteam_id, "careteam.end")
        if team.status not in ("active", "proposed"):
            return render(uow, team)  # ending twice is a no-op: DELETE is idempotent
        now = deps.clock()
        was_active = team.status == "active"
        _end_team(uow, team, now)
        for change in uow.team_changes.pending_for_patient(team.patient_key):
            if change.careteam_id == team.id:  # a requester withdrawing its own request
                change.status, change.decided_at, change.decided_by = "withdrawn", now, cmd.team_org_id
                uow.team_changes.add(change)
        if was_active:
            waiting = uow.team_changes.pending_for_patient(team.patient_key)
            if waiting:  # the team let go: the oldest request takes over now rather than at its deadline
                _settle(uow, waiting[0], ChangeStatus.RELEASED, cmd.team_org_id, now)
            else:
                careteam_changed(uow, team.patient_key, "ended", now)
        view = render(uow, team)
        uow.commit()
        return view


def change_referent(cmd: ChangeReferent, uow: AdmissionsUnitOfWork, deps: Deps) -> CareTeamView:
    """Ends the current referent's participant period and starts the new one's (Cercle de soins periods)."""
    with uow:
        action = "careteam.change-referent"
        team = own_careteam(uow, cmd.team_org_id, cmd.careteam_id, action)
        if team.status != "active":
            raise Conflict(f"CareTeam {team.id} has ended; enrol the patient again", expression=["CareTeam.status"])
        now = deps.clock()
        current = uow.careteams.current_referent(team.id)
        new = cmd.referent
        if current is not None and (current.member_system, current.member_value) == (
            new.member_system,
            new.member_value,
        ):
            raise Unprocessable(
                "this practitioner is already the referent", expression=["Parameters.parameter[referent]"]
            )
        if current is not None:
            current.period_end = now
            uow.careteams.add(current)
        started = domain.Participant(
            new.role, new.member_system, new.member_value, new.member_display, now, None, new.telecom
        )
        uow.careteams.add(_participant_row(team.id, started, now))
        team.version += 1
        uow.careteams.add(team)
        uow.careteams.flush()
        careteam_changed(uow, team.patient_key, "referent-changed", now)
        view = render(uow, team)
        uow.commit()
        return view
