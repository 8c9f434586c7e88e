"""Hospital admissions, their corrections and cancellations: recorded, routed, notified, published."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError

from services.admissions import domain
from services.admissions.adapters.orm import Admission, AdmissionMessageRow
from services.admissions.commands import AdmissionMessage, CancelAdmission, RecordAdmission, ReviseAdmission
from services.admissions.deps import Deps
from services.admissions.domain import AdmissionStatus
from services.admissions.handlers.context import careteam_changed, instant, learn_postal_code, notify, patient_context
from services.admissions.uow import AdmissionsUnitOfWork
from shared.contracts import About
from shared.errors import Conflict
from shared.fhir.builders import RELAIS_ENDPOINT, message_bundle, message_response
from shared.fhir.encounter import check_same_patient, local_only_issue
from shared.fhir.outcome import issue, outcome_from_issues
from shared.identifiers import FINESS
from shared.reach import nobody_reached
from shared.routing import Recipient, recipients_from_json, recipients_to_json, route


def _notify(
    uow: AdmissionsUnitOfWork, cmd: AdmissionMessage, recipients: list[Recipient], key: str, admission_id: str,
    now: datetime,
) -> None:
    facts = cmd.facts
    about = About(
        patient_key=key,
        reference=f"Admission/{admission_id}",
        subject=facts.encounter_key,
        commune=facts.commune,
        birth_date=facts.birth_date,
    )

    def full(message_id: str) -> dict[str, Any]:
        # The clinical message only for care-team members: built per recipient, with its own id.
        return message_bundle(
            cmd.event_type,
            source_endpoint=RELAIS_ENDPOINT,
            focus=[facts.focus],
            extra_resources=facts.resources,
            sender={"identifier": {"system": FINESS, "value": facts.hospital_org_id}},
            message_id=message_id,
            timestamp=instant(now),
            sender_event=cmd.request_header.get("eventCoding"),
            validated_models=facts.models,
        )

    notify(
        uow,
        recipients,
        cmd.event_type,
        source_id=cmd.message_id,
        about=about,
        sender=facts.hospital_org_id,
        occurred_at=facts.started_at,
        now=now,
        full=full,
    )


def _publish_domain_event(
    uow: AdmissionsUnitOfWork, cmd: AdmissionMessage, admission: Admission, recipients: list[Recipient]
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


def _replayed(uow: AdmissionsUnitOfWork, cmd: AdmissionMessage) -> dict[str, Any] | None:
    seen = uow.messages.get(cmd.message_id)
    if seen is None:
        return None
    domain.check_replay(seen.fingerprint, cmd.fingerprint, cmd.message_id)
    return seen.response


def _response(cmd: AdmissionMessage, now: datetime, *, reached: bool = True) -> dict[str, Any]:
    issues: list[dict[str, Any]] = []
    # A local-only patient is shared with the care team only, and the hospital is told why.
    if cmd.facts.patient.local_only:
        issues.append(local_only_issue())
    if not reached:
        issues.append(nobody_reached("admissions", cmd.event_type.value))
    return message_response(
        cmd.message_id,
        cmd.request_header,
        "ok",
        outcome_from_issues(issues) if issues else None,
        message_id=domain.derived_id(cmd.message_id, "response"),
        timestamp=instant(now),
    )


def _commit_or_replay(uow: AdmissionsUnitOfWork, cmd: AdmissionMessage, response: dict[str, Any]) -> dict[str, Any]:
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


def _message_row(
    cmd: AdmissionMessage, admission_id: str, response: dict[str, Any], now: datetime
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


def _already_recorded(
    uow: AdmissionsUnitOfWork, cmd: AdmissionMessage, existing: Admission, now: datetime
) -> dict[str, Any]:
    """The same admission again under another message id (a copy relayed by an engine): ok, nobody told twice."""
    earlier = f"this admission was already recorded from an earlier message (Relais id {existing.message_id})"
    note = issue("information", "duplicate", earlier)
    response = message_response(
        cmd.message_id,
        cmd.request_header,
        "ok",
        outcome_from_issues([note]),
        message_id=domain.derived_id(cmd.message_id, "response"),
        timestamp=instant(now),
    )
    uow.messages.add(_message_row(cmd, existing.id, response, now))
    return _commit_or_replay(uow, cmd, response)


def record_admission(cmd: RecordAdmission, uow: AdmissionsUnitOfWork, deps: Deps) -> dict[str, Any]:
    facts = cmd.facts
    key = deps.pseudonymise(facts.patient)
    with uow:
        replay = _replayed(uow, cmd)
        if replay is not None:
            return replay
        existing = uow.admissions.by_encounter(facts.hospital_org_id, facts.encounter_key)
        if existing is not None and domain.same_admission(existing, key, facts):
            return _already_recorded(uow, cmd, existing, deps.clock())
        if existing is not None:
            raise Conflict(
                f"encounter {facts.encounter_key} was admitted by message {existing.message_id}; "
                "send revise-admit to correct it",
                expression=["Encounter.identifier"],
            )
        now = deps.clock()
        context = patient_context(
            uow,
            key,
            facts.hospital_org_id,
            facts.postal_code,
            local_only=facts.patient.local_only,
            encounter_key=facts.encounter_key,
        )
        recipients = route(cmd.event_type, context)
        # Before the admission rows are added: this flushes, and only the commit below may meet a duplicate.
        if learn_postal_code(uow, key, facts.postal_code, now):
            careteam_changed(uow, key, "postal-code", now)
        response = _response(cmd, now, reached=bool(recipients))
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
            recipients=recipients_to_json(recipients),
            recorded_at=now,
            updated_at=now,
        )
        uow.admissions.add(admission)
        uow.messages.add(_message_row(cmd, admission.id, response, now))
        _notify(uow, cmd, recipients, key, admission.id, now)
        _publish_domain_event(uow, cmd, admission, recipients)
        return _commit_or_replay(uow, cmd, response)


def amend_admission(cmd: ReviseAdmission | CancelAdmission, uow: AdmissionsUnitOfWork, deps: Deps) -> dict[str, Any]:
    """A correction or cancellation (HL7 v2 A08/A11): told to the original's recipients, nobody else."""
    facts = cmd.facts
    key = deps.pseudonymise(facts.patient)
    with uow:
        replay = _replayed(uow, cmd)
        if replay is not None:
            return replay
        original = uow.admissions.by_encounter(facts.hospital_org_id, facts.encounter_key)
        domain.check_correction_target(original.status if original else None, facts.encounter_key, cmd.event_type)
        if original is None:  # check_correction_target refuses a missing original; this narrows the type
            raise RuntimeError("correction target vanished")
        check_same_patient(original.patient_key, key)
        now = deps.clock()
        recipients = domain.correction_recipients(recipients_from_json(original.recipients), cmd.event_type)
        # A correction may carry a new address; a cancellation (maybe of the wrong patient) teaches nothing.
        # Before the message row is added: this flushes, and only the commit may meet a duplicate.
        if isinstance(cmd, ReviseAdmission) and learn_postal_code(uow, original.patient_key, facts.postal_code, now):
            careteam_changed(uow, original.patient_key, "postal-code", now)
        if isinstance(cmd, CancelAdmission):
            original.status = AdmissionStatus.CANCELLED
        else:
            original.status = AdmissionStatus.CORRECTED
            original.encounter_class = facts.encounter_class
            original.started_at = facts.started_at
        original.updated_at = now
        uow.admissions.add(original)
        response = _response(cmd, now)
        uow.messages.add(_message_row(cmd, original.id, response, now))
        _notify(uow, cmd, recipients, original.patient_key, original.id, now)
        _publish_domain_event(uow, cmd, original, recipients)
        return _commit_or_replay(uow, cmd, response)
