"""The treating-team registry (ANS Cercle de soins): enrolment, its end, the referent's periods."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy.exc import IntegrityError

from services.admissions import domain
from services.admissions.adapters.orm import CareTeamParticipantRow, CareTeamRow
from services.admissions.commands import ChangeReferent, EndEnrolment, EnrolPatient
from services.admissions.deps import Deps
from services.admissions.handlers.context import careteam_changed, learn_postal_code
from services.admissions.uow import AdmissionsUnitOfWork
from services.admissions.views import CareTeamView, own_careteam, render
from shared.errors import Conflict, Unprocessable


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


def enrol_patient(cmd: EnrolPatient, uow: AdmissionsUnitOfWork, deps: Deps) -> CareTeamView:
    key = deps.pseudonymise(cmd.patient)
    with uow:
        current = uow.careteams.active_for_patient(key)
        if current is not None:
            whose = "your team" if current.team_org_id == cmd.team_org_id else "another team"
            raise Conflict(
                f"the patient already has an active treating team ({whose}); it must end that enrolment first",
                expression=["CareTeam.subject"],
            )
        now = deps.clock()
        team = CareTeamRow(
            id=str(uuid.uuid4()),
            patient_key=key,
            subject_system=cmd.patient.system,
            subject_value=cmd.patient.value,
            team_org_id=cmd.team_org_id,
            name=cmd.name,
            status="active",
            started_at=now,
            version=1,
        )
        try:
            uow.careteams.add(team)
            uow.careteams.flush()  # the one-active-team index may refuse it here already
            for p in cmd.participants:
                uow.careteams.add(_participant_row(team.id, p, now))
            learn_postal_code(uow, key, cmd.postal_code, now)
            careteam_changed(uow, key, "enrolled", now)
            view = render(uow, team)
            uow.commit()
        except IntegrityError:
            uow.rollback()
            raise Conflict(
                "the patient was just enrolled with a treating team", expression=["CareTeam.subject"]
            ) from None
        return view


def end_enrolment(cmd: EndEnrolment, uow: AdmissionsUnitOfWork, deps: Deps) -> CareTeamView:
    with uow:
        team = own_careteam(uow, cmd.team_org_id, cmd.careteam_id, "careteam.end")
        if team.status != "active":
            return render(uow, team)  # ending twice is a no-op: DELETE is idempotent
        now = deps.clock()
        team.status = "inactive"
        team.ended_at = now
        team.version += 1
        for p in uow.careteams.participants(team.id):
            if p.period_end is None:
                p.period_end = now
                uow.careteams.add(p)
        uow.careteams.add(team)
        uow.careteams.flush()
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
