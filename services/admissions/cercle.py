"""ANS Cercle de soins: the IG's CareTeam (roles, literal references, RelatedPerson and Organization members,
participant periods) and its creation by a `transaction` Bundle, read into an enrolment. Pure (no I/O).

Relais' referent in IG terms: the participant whose `role` carries the code `referent` of Relais' care-team role
system (a second role next to the IG's TRE_R259/TRE_R260 one; the IG's binding is not closed). No referent named:
the team's managing organisation is the contact.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from services.admissions import domain
from services.admissions.domain import Participant
from shared.errors import BadRequest, Unprocessable
from shared.fhir.encounter import PatientIdentity, patient_identity
from shared.fhir.intake import check_codes, index_resources, resolve_reference, usable_postal_code
from shared.fhir.models import Bundle, CareTeam, Patient, PractitionerRole, Resource
from shared.fhir.outcome import outcome_from_validation_error
from shared.identifiers import ADELI, FINESS, IDNPS, IDNST, RPPS, SIRET, validate_identifier
from shared.validation import check_text

TRE_R259 = "https://mos.esante.gouv.fr/NOS/TRE_R259-HL7ParticipationFunction/FHIR/TRE-R259-HL7ParticipationFunction"
TRE_R260 = "https://mos.esante.gouv.fr/NOS/TRE_R260-HL7RoleClass/FHIR/TRE-R260-HL7RoleClass"
TRE_R260_ROLE = "tre-r260:"  # stored role prefix of a TRE_R260 role class (ECON, NOK, CAREGIVER...)
# A member known only by its literal reference ("RelatedPerson/12" or a urn:uuid): Relais keeps no such resource.
MEMBER_REFERENCE = "https://relais.example.org/fhir/NamingSystem/careteam-member-reference"
# What a Cercle de soins transaction may create next to its CareTeam (kept inside the CareTeam by Relais).
TRANSACTION_TYPES = frozenset({"Patient", "Organization", "RelatedPerson", "Practitioner", "PractitionerRole"})

# National identifier systems of members, and the resource type each names (rendered as Reference.type).
MEMBER_TYPES = {
    RPPS: "Practitioner",
    IDNPS: "Practitioner",
    ADELI: "Practitioner",
    FINESS: "Organization",
    IDNST: "Organization",
    SIRET: "Organization",
}

Resolve = Callable[[str | None], Resource | None]

MAX_MEMBER_TEXT = 200
MAX_MEMBER_VALUE = 100  # the participant column of the member identifier value


def check_no_empty_strings(node: Any, path: str) -> None:
    """FHIR forbids empty strings (`"name": ""`): 422 naming the first, rather than storing a blank."""
    if isinstance(node, str) and not node.strip():
        raise Unprocessable(f"empty string at {path}: FHIR values may not be empty", expression=[path])
    if isinstance(node, dict):
        for key, value in node.items():
            check_no_empty_strings(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, item in enumerate(node):
            check_no_empty_strings(item, f"{path}[{i}]")


def role_of(participant: Any) -> str:
    """Relais' referent wins, then Relais' own codes, the IG's médecin traitant (TRE_R259 PCP), a TRE_R260 class."""
    codings = [c for concept in participant.role or [] for c in concept.coding or [] if c.code]
    codes = {(c.system, c.code) for c in codings}
    if (domain.CARETEAM_ROLE_SYSTEM, domain.ROLE_REFERENT) in codes:
        return domain.ROLE_REFERENT
    own = [c.code for c in codings if c.system in (domain.CARETEAM_ROLE_SYSTEM, None) and c.code in domain.ROLE_DISPLAY]
    if own:
        return own[0]
    if (TRE_R259, "PCP") in codes:
        return domain.ROLE_MEDECIN_TRAITANT
    r260 = next((c.code for c in codings if c.system == TRE_R260), None)
    return f"{TRE_R260_ROLE}{r260}" if r260 else domain.ROLE_MEMBER


def _name(resource: Resource) -> str | None:
    name = getattr(resource, "name", None)
    if isinstance(name, str):
        return name
    first = name[0] if isinstance(name, list) and name else None
    if first is None:
        return None
    return first.text or " ".join(p for p in [*(first.given or []), first.family] if p) or None


def _telecom(resource: Resource | None) -> tuple[dict[str, str], ...]:
    points = list(getattr(resource, "telecom", None) or [])
    return tuple({"system": p.system, "value": p.value} for p in points if p.system and p.value)


def member_of(reference: Any, where: str, resolve: Resolve) -> tuple[str, str, str | None, tuple[dict[str, str], ...]]:
    """(system, value, display, telecom) of a member: its identifier, else the bundled resource's, else the
    literal reference itself (RelatedPerson and Organization members often have no national identifier)."""
    literal = getattr(reference, "reference", None) if reference is not None else None
    found = resolve(literal)
    identifier = getattr(reference, "identifier", None) if reference is not None else None
    if (identifier is None or not identifier.value) and found is not None:
        # A national identifier names the member for good; a local one (a RelatedPerson's) says less than
        # the reference, which keeps the member's type.
        found_ids = getattr(found, "identifier", None) or []
        identifier = next((i for i in found_ids if i.system in MEMBER_TYPES and i.value), None)
    display = (getattr(reference, "display", None) if reference is not None else None) or (
        _name(found) if found is not None else None
    )
    telecom = _telecom(found)
    if isinstance(found, PractitionerRole) and not telecom:
        telecom = _telecom(resolve(found.practitioner.reference if found.practitioner else None))
    if identifier is not None and identifier.system and identifier.value:
        return identifier.system, validate_identifier(identifier.system, identifier.value), display, telecom
    if literal and not literal.startswith("#"):
        value = f"{found.get_resource_type()}/{found.id}" if found is not None and found.id else literal
        if len(value) <= 100:
            return MEMBER_REFERENCE, value, display, telecom
    raise Unprocessable(
        f"{where} needs an identifier (RPPS, IDNPS, FINESS...) or a literal reference", expression=[where]
    )


def participant_of(part: Any, index: int, now: datetime, resolve: Resolve) -> Participant:
    where = f"CareTeam.participant[{index}].member"
    system, value, display, telecom = member_of(part.member, where, resolve)
    # The participant columns hold 200 characters (member system and display): longer is refused, not cut.
    check_text(system, f"{where}.identifier.system", MAX_MEMBER_TEXT)
    check_text(value, f"{where}.identifier.value", MAX_MEMBER_VALUE)
    display = check_text(display, f"{where}.display", MAX_MEMBER_TEXT)
    start = part.period.start if part.period and part.period.start else now
    end = part.period.end if part.period and part.period.end else None
    return Participant(role_of(part), system, value, display, start, end, telecom)


def subject_of(careteam: CareTeam, resolve: Resolve) -> tuple[PatientIdentity, str | None]:
    """The patient's identity (INS key checked) and postal code, from subject.identifier or the resolved Patient."""
    subject = careteam.subject
    found = resolve(subject.reference if subject is not None else None)
    patient = found if isinstance(found, Patient) else None
    codes = [usable_postal_code(a.postalCode) for a in (patient.address or [] if patient else []) if a.use != "old"]
    postal_code = next((c for c in codes if c), None)
    identifier = getattr(subject, "identifier", None) if subject is not None else None
    if identifier is not None:
        return patient_identity([identifier], "CareTeam.subject.identifier"), postal_code
    if patient is None:
        raise Unprocessable(
            "CareTeam.subject needs the patient's INS (subject.identifier), or the Patient in the same "
            "transaction Bundle: Relais keeps no Patient resources to resolve a reference against",
            expression=["CareTeam.subject"],
        )
    return patient_identity(patient.identifier, "Patient.identifier"), postal_code


def contained_resolver(careteam: CareTeam, outer: Resolve | None = None) -> Resolve:
    """References resolved against the CareTeam's contained resources ("#id"), then `outer` (a Bundle)."""
    contained = {f"#{r.id}": r for r in careteam.contained or [] if getattr(r, "id", None)}

    def resolve(reference: str | None) -> Resource | None:
        if reference and reference in contained:
            return contained[reference]
        return outer(reference) if outer is not None else None

    return resolve


def transaction_careteam(data: dict[str, Any]) -> tuple[CareTeam, Resolve, list[dict[str, Any]]]:
    """The CareTeam of a Cercle de soins creation transaction, a resolver over its entries, and the raw entries."""
    if data.get("resourceType") != "Bundle" or data.get("type") != "transaction":
        raise BadRequest("expected a Bundle of type transaction", expression=["Bundle.type"])
    check_no_empty_strings(data, "Bundle")
    bundle = _validated_bundle(data)
    careteams = [e.resource for e in bundle.entry or [] if isinstance(e.resource, CareTeam)]
    if len(careteams) != 1:
        raise Unprocessable(
            f"a Cercle de soins transaction creates exactly one CareTeam, got {len(careteams)}",
            expression=["Bundle.entry"],
        )
    for i, entry in enumerate(bundle.entry or []):
        kind = entry.resource.get_resource_type() if entry.resource is not None else None
        if kind != "CareTeam" and kind not in TRANSACTION_TYPES:
            raise Unprocessable(
                f"Bundle.entry[{i}] is a {kind}: a Cercle de soins transaction holds the CareTeam, its Patient "
                "and members (" + ", ".join(sorted(TRANSACTION_TYPES)) + ")",
                expression=[f"Bundle.entry[{i}].resource"],
            )
        if entry.request is None or entry.request.method != "POST":
            raise Unprocessable(
                f"Bundle.entry[{i}].request.method must be POST (creation)", expression=[f"Bundle.entry[{i}].request"]
            )
    index = index_resources(bundle)
    careteam = careteams[0]
    resolve = contained_resolver(careteam, lambda ref: resolve_reference(ref, index))
    return careteam, resolve, list(data.get("entry") or [])


def _validated_bundle(data: dict[str, Any]) -> Bundle:
    try:
        bundle = Bundle.model_validate(data)
    except ValidationError as exc:
        err = BadRequest("Bundle is not valid FHIR R4", expression=["Bundle"])
        err.issues = outcome_from_validation_error(exc, "Bundle")  # type: ignore[attr-defined]
        raise err from exc
    issues = check_codes(bundle, "Bundle")
    if issues:
        err = BadRequest("Bundle has invalid codes", expression=[issues[0]["expression"][0]])
        err.issues = issues  # type: ignore[attr-defined]
        raise err
    return bundle


def transaction_response(entries: list[dict[str, Any]], careteam_id: str) -> dict[str, Any]:
    """The transaction-response: the CareTeam created; its Patient and members kept inside it (no own resource)."""
    answers: list[dict[str, Any]] = []
    for entry in entries:
        kind = (entry.get("resource") or {}).get("resourceType")
        if kind == "CareTeam":
            answers.append({"response": {"status": "201 Created", "location": f"CareTeam/{careteam_id}/_history/1"}})
            continue
        note = f"kept in CareTeam/{careteam_id}: Relais stores no separate {kind} resource"
        outcome = {
            "resourceType": "OperationOutcome",
            "issue": [{"severity": "information", "code": "informational", "diagnostics": note}],
        }
        answers.append({"response": {"status": "200 OK", "outcome": outcome}})
    return {"resourceType": "Bundle", "type": "transaction-response", "entry": answers}
