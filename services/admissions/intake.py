"""From validated FHIR to commands: what the entrypoints hand to the handlers. Pure (no I/O)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, TypeVar

from pydantic import ValidationError

from services.admissions import cercle, commands, domain
from services.admissions.domain import AdmissionFacts, Participant
from shared.errors import BadRequest, Forbidden, Unprocessable
from shared.events import Role
from shared.fhir.encounter import PatientIdentity, patient_identity, read_encounter_message
from shared.fhir.intake import MessageBundle, check_codes, forwardable, usable_postal_code
from shared.fhir.models import CareTeam, Consent, Parameters, Resource
from shared.fhir.outcome import outcome_from_validation_error
from shared.idempotence import sender_message_id
from shared.identifiers import validate_identifier
from shared.validation import check_text

# CareTeam name, member system and display columns.
MAX_NAME = 200


def _iso(value: date | datetime | str | None) -> str | None:
    if value is None:
        return None
    return value.isoformat() if isinstance(value, date | datetime) else str(value)


def patient_identity_from_reference(reference: Any, where: str) -> PatientIdentity:
    identifier = getattr(reference, "identifier", None) if reference is not None else None
    return patient_identity([identifier] if identifier else [], f"{where}.identifier")


def admission_facts(msg: MessageBundle, caller_org_id: str) -> AdmissionFacts:
    """Validated facts of an admission message; 422 for what Relais cannot act on, 403 for another's FINESS."""
    read = read_encounter_message(msg, caller_org_id)
    encounter = read.encounter
    domain.check_encounter_status(msg.event_type, read.status)
    encounter_class = domain.check_encounter_class(encounter.class_fhir.code if encounter.class_fhir else None)
    started = _iso(encounter.period.start if encounter.period else None) or _iso(msg.bundle.timestamp)
    if not started:
        raise Unprocessable("Encounter.period.start is required", expression=["Encounter.period.start"])
    forwarded = forwardable(msg)
    focus = next(data for resource, data in forwarded if resource is encounter)
    resources = tuple(data for resource, data in forwarded if resource is not encounter)
    models = (encounter, *(resource for resource, _ in forwarded if resource is not encounter))
    return AdmissionFacts(
        hospital_org_id=read.hospital_org_id,
        encounter_key=read.encounter_key,
        encounter_status=read.status,
        encounter_class=encounter_class,
        started_at=started,
        patient=read.identity,
        birth_date=read.birth_date,
        postal_code=read.residence.postal_code,
        commune=read.residence.commune,
        referent=read.referent,
        has_reason=bool(msg.all("Condition")),
        focus=focus,
        resources=resources,
        models=models,
    )


def admission_command(msg: MessageBundle, caller_org_id: str) -> commands.AdmissionMessage:
    command = commands.command_for(msg.event_type)
    facts = admission_facts(msg, caller_org_id)
    return command(
        message_id=sender_message_id(caller_org_id, msg.message_id),
        fingerprint=domain.fingerprint(msg.raw),
        event_type=msg.event_type,
        caller_org_id=caller_org_id,
        facts=facts,
        request_header=msg.json_of(msg.header),
    )


# --- CareTeam, Parameters, Consent ---------------------------------------------------------------------


R = TypeVar("R", bound=Resource)


def validated(model: type[R], data: dict[str, Any]) -> R:
    """An R4B resource of the expected type, or a 400 OperationOutcome listing every issue."""
    name = model.__name__
    if data.get("resourceType") != name:
        raise BadRequest(
            f"expected a {name} resource, got {data.get('resourceType')!r}", expression=["resourceType"]
        )
    try:
        resource = model.model_validate(data)
    except ValidationError as exc:
        err = BadRequest(f"{name} is not valid FHIR R4", expression=[name])
        err.issues = outcome_from_validation_error(exc, name)  # type: ignore[attr-defined]
        raise err from exc
    except TypeError as exc:  # some fhir.resources validators raise it on a wrong JSON type
        raise BadRequest(f"{name} is not valid FHIR R4: an element has the wrong JSON type", expression=[name]) from exc
    issues = check_codes(resource, name)
    if issues:
        err = BadRequest(f"{name} has invalid codes", expression=[issues[0]["expression"][0]])
        err.issues = issues  # type: ignore[attr-defined]
        raise err
    return resource


def _member(reference: Any, where: str) -> tuple[str, str, str | None]:
    identifier = getattr(reference, "identifier", None) if reference is not None else None
    if identifier is None or not identifier.system or not identifier.value:
        raise Unprocessable(f"{where} needs an identifier (RPPS or IDNPS)", expression=[where])
    check_text(identifier.system, f"{where}.identifier.system", MAX_NAME)
    value = check_text(validate_identifier(identifier.system, identifier.value), f"{where}.identifier.value", 100)
    return identifier.system, value or "", check_text(reference.display, f"{where}.display", MAX_NAME)


def _telecom(points: list[Any] | None) -> tuple[dict[str, str], ...]:
    return tuple(
        {"system": point.system, "value": point.value}
        for point in points or []
        if point.system and point.value
    )


def _postal_code(careteam: Any) -> str | None:
    """The postal code of the CareTeam's only contained Patient, when the subject is given by identifier."""
    patients = [r for r in careteam.contained or [] if r.get_resource_type() == "Patient"]
    addresses = (patients[0].address or []) if len(patients) == 1 else []
    codes = [usable_postal_code(a.postalCode) for a in addresses]
    return next((c for c in codes if c), None)


def _check_managing_organisation(careteam: CareTeam, team_org_id: str, resolve: cercle.Resolve) -> None:
    for org in careteam.managingOrganization or []:
        identifiers = [org.identifier] if org.identifier else []
        found = resolve(org.reference)
        identifiers += list(getattr(found, "identifier", None) or [])
        for identifier in identifiers:
            if identifier.value and identifier.value != team_org_id:
                raise Forbidden(
                    f"a team enrols patients for itself: managingOrganization {identifier.value} is not {team_org_id}",
                    expression=["CareTeam.managingOrganization"],
                )


def careteam_enrolment(
    careteam: CareTeam, team_org_id: str, now: datetime, resolve: cercle.Resolve
) -> commands.EnrolPatient:
    """The enrolment a Cercle de soins CareTeam asks for (members and subject resolved by `resolve`)."""
    if careteam.status not in (None, "active", "proposed"):
        raise Unprocessable("a new enrolment is active; send status 'active'", expression=["CareTeam.status"])
    patient, postal_code = cercle.subject_of(careteam, resolve)
    _check_managing_organisation(careteam, team_org_id, resolve)
    participants = tuple(cercle.participant_of(p, i, now, resolve) for i, p in enumerate(careteam.participant or []))
    domain.check_enrolment(participants)
    name = check_text(careteam.name, "CareTeam.name", MAX_NAME)
    return commands.EnrolPatient(team_org_id, patient, participants, name, postal_code or _postal_code(careteam))


def enrol_command(data: dict[str, Any], team_org_id: str, now: datetime) -> commands.EnrolPatient:
    cercle.check_no_empty_strings(data, "CareTeam")
    careteam = validated(CareTeam, data)
    return careteam_enrolment(careteam, team_org_id, now, cercle.contained_resolver(careteam))


def transaction_command(
    data: dict[str, Any], team_org_id: str, now: datetime
) -> tuple[commands.EnrolPatient, list[dict[str, Any]]]:
    """A Cercle de soins creation transaction: the enrolment of its CareTeam, and the entries to answer."""
    careteam, resolve, entries = cercle.transaction_careteam(data)
    return careteam_enrolment(careteam, team_org_id, now, resolve), entries


def change_referent_command(
    data: dict[str, Any], team_org_id: str, careteam_id: str, now: datetime
) -> commands.ChangeReferent:
    params = validated(Parameters, data)
    by_name = {p.name: p for p in params.parameter or []}
    part = by_name.get("referent")
    if part is None:
        raise Unprocessable(
            "Parameters needs a 'referent' parameter (valueReference or valueIdentifier)",
            expression=["Parameters.parameter"],
        )
    if part.valueReference is not None:
        system, value, display = _member(part.valueReference, "Parameters.parameter[referent].valueReference")
    elif part.valueIdentifier is not None and part.valueIdentifier.system and part.valueIdentifier.value:
        system = part.valueIdentifier.system
        value = validate_identifier(system, part.valueIdentifier.value)
        display = None
    else:
        raise Unprocessable(
            "the 'referent' parameter needs an identifier (RPPS or IDNPS)",
            expression=["Parameters.parameter[referent]"],
        )
    if "name" in by_name and by_name["name"].valueString:
        display = check_text(by_name["name"].valueString, "Parameters.parameter[name]", MAX_NAME)
    # How to reach the new referent: any number of 'telecom' parameters (valueContactPoint).
    telecom = _telecom(
        [p.valueContactPoint for p in params.parameter or [] if p.name == "telecom" and p.valueContactPoint]
    )
    return commands.ChangeReferent(
        team_org_id,
        careteam_id,
        Participant(domain.ROLE_REFERENT, system, value, display, now, None, telecom),
    )


def consent_command(data: dict[str, Any], caller_org_id: str, caller_role: Role) -> commands.RecordConsent:
    consent = validated(Consent, data)
    if consent.status != "active":
        raise Unprocessable("only an active Consent is recorded", expression=["Consent.status"])
    patient = patient_identity_from_reference(consent.patient, "Consent.patient")
    if consent.provision is None or consent.provision.type not in ("deny", "permit"):
        raise Unprocessable(
            "Consent.provision.type must say 'deny' (opposition to sharing beyond the care team) or 'permit'",
            expression=["Consent.provision.type"],
        )
    return commands.RecordConsent(patient, consent.provision.type == "deny", caller_org_id, caller_role)
