"""One function per command; each takes the unit of work (plus clock and secret) and commits at most once."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError

from services.admissions import domain, views
from services.admissions.adapters.orm import (
    Admission,
    AdmissionMessageRow,
    CareTeamParticipantRow,
    CareTeamRow,
    ConsentRow,
    DacCase,
    Territory,
)
from services.admissions.domain import AdmissionStatus, PatientIdentity
from services.admissions.uow import AdmissionsUnitOfWork
from shared.auth import Principal
from shared.errors import Conflict, NotFound, Unprocessable
from shared.events import TOPIC_CARETEAM, EventType
from shared.fhir.builders import RELAIS_ENDPOINT, message_bundle, message_response
from shared.identifiers import FINESS, RPPS, patient_key
from shared.minimise import minimise, shape_for
from shared.routing import Detail, PatientContext, Recipient, route

Clock = Callable[[], datetime]


def _instant(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _key(identity: PatientIdentity, secret: str) -> str:
    return patient_key(identity.system, identity.value, secret)


def patient_context(
    uow: AdmissionsUnitOfWork, key: str, hospital: str | None, postal_code: str | None, *, local_only: bool = False
) -> PatientContext:
    """What routing needs, read from the registry: team, open DAC case, consent, territory of residence.

    A patient known only by a local identifier has no consent Relais can look up: the care team only.
    """
    team = uow.careteams.active_for_patient(key)
    case = uow.dac_cases.open_for_patient(key)
    consent = uow.consents.get(key)
    territory = uow.territories.get(postal_code) if postal_code else None
    return PatientContext(
        team_org_id=team.team_org_id if team else None,
        hospital_org_id=hospital,
        cpts_org_id=territory.cpts_org_id if territory else None,
        dac_org_id=case.dac_org_id if case else (territory.dac_org_id if territory else None),
        dac_case_open=case is not None,
        consent_opposed=bool(consent and consent.opposed) or local_only,
    )


# --- admissions -------------------------------------------------------------------------------------


def _notify(
    uow: AdmissionsUnitOfWork,
    cmd: domain._AdmissionMessage,
    recipients: list[Recipient],
    key: str,
    now: datetime,
) -> None:
    facts = cmd.facts
    minimal = minimise(
        {},
        event_type=cmd.event_type,
        patient_key=key,
        commune=facts.commune or facts.postal_code,
        birth_date=facts.birth_date,
        occurred_at=facts.started_at,
        recorded_at=_instant(now),
    )
    for recipient in recipients:
        message_id = domain.notification_id(cmd.message_id, recipient)
        full: dict[str, Any] = {}
        if recipient.detail is Detail.FULL:
            # The clinical message only for care-team members: built per recipient, with its own id.
            full = message_bundle(
                cmd.event_type,
                source_endpoint=RELAIS_ENDPOINT,
                focus=[facts.focus],
                extra_resources=facts.resources,
                sender={"identifier": {"system": FINESS, "value": facts.hospital_org_id}},
                message_id=message_id,
                timestamp=_instant(now),
            )
        uow.outbox.add(
            recipient.topic,
            recipient.organisation_id,
            cmd.event_type.value,
            {
                "recipient": recipient.organisation_id,
                "role": recipient.role.value,
                "detail": recipient.detail.value,
                "event": cmd.event_type.value,
                "patient_key": key,
                # docs/events.md: every notification names its sender and what it is about.
                "sender": facts.hospital_org_id,
                "subject": facts.encounter_key,
                "payload": shape_for(recipient, full, minimal),
            },
            message_id=message_id,
        )


def _publish_domain_event(
    uow: AdmissionsUnitOfWork,
    cmd: domain._AdmissionMessage,
    admission: Admission,
    recipients: list[Recipient],
) -> None:
    event = domain.PatientAdmitted(
        event=cmd.event_type,
        admission_id=admission.id,
        patient_key=admission.patient_key,
        hospital_org_id=admission.hospital_org_id,
        encounter_key=admission.encounter_key,
        started_at=admission.started_at,
        recipients=tuple(r.organisation_id for r in recipients),
    )
    uow.outbox.add(
        event.topic,
        admission.patient_key,
        cmd.event_type.value,
        event.data(),
        message_id=domain.derived_id(cmd.message_id, "domain-event"),
    )


def _replayed(uow: AdmissionsUnitOfWork, cmd: domain._AdmissionMessage) -> dict[str, Any] | None:
    seen = uow.messages.get(cmd.message_id)
    if seen is None:
        return None
    domain.check_replay(seen.fingerprint, cmd.fingerprint, cmd.message_id)
    return seen.response


def _response(cmd: domain._AdmissionMessage, now: datetime) -> dict[str, Any]:
    return message_response(
        cmd.message_id,
        cmd.request_header,
        "ok",
        message_id=domain.derived_id(cmd.message_id, "response"),
        timestamp=_instant(now),
    )


def _commit_or_replay(
    uow: AdmissionsUnitOfWork, cmd: domain._AdmissionMessage, response: dict[str, Any]
) -> dict[str, Any]:
    try:
        uow.commit()
    except IntegrityError:
        # A concurrent copy of this message (or another message for this encounter) committed first.
        uow.rollback()
        replay = _replayed(uow, cmd)
        if replay is not None:
            return replay
        raise Conflict(
            f"encounter {cmd.facts.encounter_key} is already admitted; send revise-admit to correct it",
            expression=["Encounter.identifier"],
        ) from None
    return response


def record_admission(
    cmd: domain.RecordAdmission, uow: AdmissionsUnitOfWork, clock: Clock, secret: str
) -> dict[str, Any]:
    facts = cmd.facts
    key = _key(facts.patient, secret)
    with uow:
        replay = _replayed(uow, cmd)
        if replay is not None:
            return replay
        existing = uow.admissions.by_encounter(facts.hospital_org_id, facts.encounter_key)
        if existing is not None:
            raise Conflict(
                f"encounter {facts.encounter_key} was admitted by message {existing.message_id}; "
                "send revise-admit to correct it",
                expression=["Encounter.identifier"],
            )
        now = clock()
        recipients = route(
            cmd.event_type,
            patient_context(
                uow, key, facts.hospital_org_id, facts.postal_code, local_only=facts.patient.local_only
            ),
        )
        # Before the admission rows are added: this flushes, and only the commit below may meet a duplicate.
        if _learn_postal_code(uow, key, facts.postal_code, now):
            _careteam_changed(uow, key, "postal-code", now)
        response = _response(cmd, now)
        admission = Admission(
            id=domain.derived_id(cmd.message_id, "admission"),
            message_id=cmd.message_id,
            fingerprint=cmd.fingerprint,
            hospital_org_id=facts.hospital_org_id,
            encounter_key=facts.encounter_key,
            patient_key=key,
            status=AdmissionStatus.RECORDED,
            encounter_class=facts.encounter_class,
            started_at=facts.started_at,
            postal_code=facts.postal_code,
            response=response,
            recipients=domain.recipients_to_json(recipients),
            recorded_at=now,
            updated_at=now,
        )
        uow.admissions.add(admission)
        uow.messages.add(_message_row(cmd, admission.id, response, now))
        _notify(uow, cmd, recipients, key, now)
        _publish_domain_event(uow, cmd, admission, recipients)
        return _commit_or_replay(uow, cmd, response)


def _message_row(
    cmd: domain._AdmissionMessage, admission_id: str, response: dict[str, Any], now: datetime
) -> AdmissionMessageRow:
    return AdmissionMessageRow(
        message_id=cmd.message_id,
        fingerprint=cmd.fingerprint,
        event_type=cmd.event_type.value,
        hospital_org_id=cmd.facts.hospital_org_id,
        admission_id=admission_id,
        response=response,
        received_at=now,
    )


def amend_admission(
    cmd: domain.ReviseAdmission | domain.CancelAdmission, uow: AdmissionsUnitOfWork, clock: Clock, secret: str
) -> dict[str, Any]:
    """A correction or cancellation (HL7 v2 A08/A11): told to the original's recipients, nobody else."""
    del secret  # the original admission carries the patient key routing uses
    facts = cmd.facts
    with uow:
        replay = _replayed(uow, cmd)
        if replay is not None:
            return replay
        original = uow.admissions.by_encounter(facts.hospital_org_id, facts.encounter_key)
        domain.check_correction_target(
            original.status if original else None, facts.encounter_key, cmd.event_type
        )
        if original is None:  # check_correction_target refuses a missing original; this narrows the type
            raise RuntimeError("correction target vanished")
        now = clock()
        recipients = domain.correction_recipients(
            domain.recipients_from_json(original.recipients), cmd.event_type
        )
        # A correction may carry a new address; a cancellation (maybe of the wrong patient) teaches nothing.
        # Before the message row is added: this flushes, and only the commit may meet a duplicate.
        if isinstance(cmd, domain.ReviseAdmission) and _learn_postal_code(
            uow, original.patient_key, facts.postal_code, now
        ):
            _careteam_changed(uow, original.patient_key, "postal-code", now)
        if isinstance(cmd, domain.CancelAdmission):
            original.status = AdmissionStatus.CANCELLED
        else:
            original.status = AdmissionStatus.CORRECTED
            original.encounter_class = facts.encounter_class
            original.started_at = facts.started_at
        original.updated_at = now
        uow.admissions.add(original)
        response = _response(cmd, now)
        uow.messages.add(_message_row(cmd, original.id, response, now))
        _notify(uow, cmd, recipients, original.patient_key, now)
        _publish_domain_event(uow, cmd, original, recipients)
        return _commit_or_replay(uow, cmd, response)


# --- care-team registry ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CareTeamView:
    resource: dict[str, Any]
    id: str


def careteam_context(uow: AdmissionsUnitOfWork, key: str) -> dict[str, Any]:
    """The patient's whole coordination context, read from the registry (docs/events.md "Care-team mirror").

    Every `careteam.changed` is built here, whatever caused it, so mirrors always get the same snapshot.
    """
    team = uow.careteams.latest_for_patient(key)
    active = team is not None and team.status == "active"
    referent = uow.careteams.current_referent(team.id) if active and team is not None else None
    consent = uow.consents.get(key)
    case = uow.dac_cases.open_for_patient(key)
    return {
        "patient_key": key,
        "careteam_id": team.id if team is not None else None,
        "team_org_id": team.team_org_id if active and team is not None else None,
        "status": "active" if active else "inactive",
        "referent": (
            {
                "rpps": referent.member_value if referent.member_system == RPPS else None,
                "name": referent.member_display,
                "telecom": list(referent.telecom or []),
            }
            if referent is not None
            else None
        ),
        "consent_opposed": bool(consent and consent.opposed),
        "dac_case_open": case is not None,
        "dac_org_id": case.dac_org_id if case is not None else None,
        "postal_code": uow.patients.postal_code(key),
    }


def _careteam_changed(uow: AdmissionsUnitOfWork, key: str, change: str, now: datetime) -> None:
    """Publish the patient's current context on relais.careteam (key: patient key); flushes first."""
    uow.careteams.flush()
    uow.outbox.add(
        TOPIC_CARETEAM,
        key,
        EventType.CARETEAM_CHANGED.value,
        {
            "event": EventType.CARETEAM_CHANGED.value,
            "change": change,
            **careteam_context(uow, key),
            "at": _instant(now),
        },
    )


def _learn_postal_code(uow: AdmissionsUnitOfWork, key: str, postal_code: str | None, now: datetime) -> bool:
    """Record the patient's last known postal code; True when that changed the patient's context."""
    return bool(postal_code) and uow.patients.record_postal_code(key, str(postal_code), now)


def _render(uow: AdmissionsUnitOfWork, team: CareTeamRow) -> CareTeamView:
    return CareTeamView(views.careteam(team, uow.careteams.participants(team.id)), team.id)


def _own_careteam(
    uow: AdmissionsUnitOfWork, principal: Principal, careteam_id: str, action: str
) -> CareTeamRow:
    """The caller's care team; another team's looks absent (404) and the attempt is audited."""
    team = uow.careteams.get(careteam_id)
    if team is None:
        raise NotFound(f"no CareTeam {careteam_id}")
    if team.team_org_id != principal.organisation_id:
        uow.rollback()
        uow.audit.record(
            action,
            outcome="denied",
            organisation_id=principal.organisation_id,
            role=principal.role.value,
            resource=f"CareTeam/{careteam_id}",
            detail={"reason": "care team of another organisation"},
        )
        uow.commit()
        raise NotFound(f"no CareTeam {careteam_id}")
    return team


def enrol_patient(
    cmd: domain.EnrolPatient, uow: AdmissionsUnitOfWork, clock: Clock, secret: str
) -> CareTeamView:
    key = _key(cmd.patient, secret)
    with uow:
        current = uow.careteams.active_for_patient(key)
        if current is not None:
            whose = "your team" if current.team_org_id == cmd.team_org_id else "another team"
            raise Conflict(
                f"the patient already has an active treating team ({whose}); it must end that enrolment first",
                expression=["CareTeam.subject"],
            )
        now = clock()
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
            _learn_postal_code(uow, key, cmd.postal_code, now)
            _careteam_changed(uow, key, "enrolled", now)
            view = _render(uow, team)
            uow.commit()
        except IntegrityError:
            uow.rollback()
            raise Conflict(
                "the patient was just enrolled with a treating team", expression=["CareTeam.subject"]
            ) from None
        return view


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


def end_enrolment(
    cmd: domain.EndEnrolment, principal: Principal, uow: AdmissionsUnitOfWork, clock: Clock
) -> CareTeamView:
    with uow:
        team = _own_careteam(uow, principal, cmd.careteam_id, "careteam.end")
        if team.status != "active":
            return _render(uow, team)  # ending twice is a no-op: DELETE is idempotent
        now = clock()
        team.status = "inactive"
        team.ended_at = now
        team.version += 1
        for p in uow.careteams.participants(team.id):
            if p.period_end is None:
                p.period_end = now
                uow.careteams.add(p)
        uow.careteams.add(team)
        uow.careteams.flush()
        _careteam_changed(uow, team.patient_key, "ended", now)
        view = _render(uow, team)
        uow.commit()
        return view


def change_referent(
    cmd: domain.ChangeReferent, principal: Principal, uow: AdmissionsUnitOfWork, clock: Clock
) -> CareTeamView:
    """Ends the current referent's participant period and starts the new one's (Cercle de soins periods)."""
    with uow:
        team = _own_careteam(uow, principal, cmd.careteam_id, "careteam.change-referent")
        if team.status != "active":
            raise Conflict(
                f"CareTeam {team.id} has ended; enrol the patient again", expression=["CareTeam.status"]
            )
        now = clock()
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
        uow.careteams.add(
            _participant_row(
                team.id,
                domain.Participant(
                    new.role, new.member_system, new.member_value, new.member_display, now, None, new.telecom
                ),
                now,
            )
        )
        team.version += 1
        uow.careteams.add(team)
        uow.careteams.flush()
        _careteam_changed(uow, team.patient_key, "referent-changed", now)
        view = _render(uow, team)
        uow.commit()
        return view


def get_careteam(careteam_id: str, principal: Principal, uow: AdmissionsUnitOfWork) -> CareTeamView:
    with uow:
        return _render(uow, _own_careteam(uow, principal, careteam_id, "careteam.read"))


def list_careteams(
    principal: Principal, uow: AdmissionsUnitOfWork, status: str | None = None
) -> list[CareTeamView]:
    with uow:
        return [_render(uow, team) for team in uow.careteams.for_team(principal.organisation_id, status)]


# --- DAC cases, consent, territory ------------------------------------------------------------------------


def open_dac_case(
    cmd: domain.OpenDacCase, uow: AdmissionsUnitOfWork, clock: Clock, secret: str
) -> dict[str, Any]:
    key = _key(cmd.patient, secret)
    with uow:
        now = clock()
        case = DacCase(id=str(uuid.uuid4()), patient_key=key, dac_org_id=cmd.dac_org_id, opened_at=now)
        uow.dac_cases.add(case)
        view = views.dac_case(case)
        try:
            uow.dac_cases.flush()
            _careteam_changed(uow, key, "dac-case-opened", now)
            uow.commit()
        except IntegrityError:
            uow.rollback()
            raise Conflict("this DAC already has an open case for the patient") from None
        return view


def close_dac_case(
    cmd: domain.CloseDacCase, principal: Principal, uow: AdmissionsUnitOfWork, clock: Clock
) -> dict[str, Any]:
    with uow:
        case = uow.dac_cases.get(cmd.case_id)
        if case is None or case.dac_org_id != cmd.dac_org_id:
            if case is not None:
                uow.audit.record(
                    "dac-case.close",
                    outcome="denied",
                    organisation_id=principal.organisation_id,
                    role=principal.role.value,
                    resource=f"dac-case/{cmd.case_id}",
                )
                uow.commit()
            raise NotFound(f"no DAC case {cmd.case_id}")
        if case.closed_at is None:  # closing twice is a no-op, and publishes nothing
            now = clock()
            case.closed_at = now
            uow.dac_cases.add(case)
            _careteam_changed(uow, case.patient_key, "dac-case-closed", now)
        view = views.dac_case(case)
        uow.commit()
        return view


def record_consent(cmd: domain.RecordConsent, uow: AdmissionsUnitOfWork, clock: Clock, secret: str) -> str:
    key = _key(cmd.patient, secret)
    with uow:
        now = clock()
        row = uow.consents.get(key)
        if row is None:
            row = ConsentRow(
                patient_key=key, opposed=cmd.opposed, recorded_by=cmd.recorded_by, recorded_at=now
            )
        else:
            row.opposed, row.recorded_by, row.recorded_at = cmd.opposed, cmd.recorded_by, now
        uow.consents.add(row)
        _careteam_changed(uow, key, "consent-recorded", now)
        uow.commit()
        return domain.derived_id(key, "consent")


def set_territory(cmd: domain.SetTerritory, uow: AdmissionsUnitOfWork, clock: Clock) -> dict[str, Any]:
    with uow:
        now = clock()
        row = uow.territories.get(cmd.postal_code) or Territory(postal_code=cmd.postal_code, updated_at=now)
        row.cpts_org_id, row.dac_org_id, row.updated_at = cmd.cpts_org_id, cmd.dac_org_id, now
        uow.territories.add(row)
        view = views.territory(row)
        # Mirrored by the services that route by territory (docs/events.md), key: postal code.
        uow.outbox.add(
            TOPIC_CARETEAM,
            cmd.postal_code,
            domain.TERRITORY_CHANGED,
            {
                "event": domain.TERRITORY_CHANGED,
                "postal_code": cmd.postal_code,
                "cpts_org_id": cmd.cpts_org_id,
                "dac_org_id": cmd.dac_org_id,
                "at": _instant(now),
            },
        )
        uow.commit()
        return view


ADMISSION_HANDLERS: dict[type, Callable[..., dict[str, Any]]] = {
    domain.RecordAdmission: record_admission,
    domain.ReviseAdmission: amend_admission,
    domain.CancelAdmission: amend_admission,
}


def handle_admission_message(
    cmd: domain._AdmissionMessage, uow: AdmissionsUnitOfWork, clock: Clock, secret: str
) -> dict[str, Any]:
    return ADMISSION_HANDLERS[type(cmd)](cmd, uow, clock, secret)
