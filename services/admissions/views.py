"""Reads: rows rendered as validated FHIR (CareTeam, searchset) or plain JSON (DAC case, territory), and the
queries the routes read with."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from services.admissions import cercle, domain
from services.admissions.adapters.orm import CareTeamParticipantRow, CareTeamRow, DacCase, TeamChangeRow, Territory
from services.admissions.uow import AdmissionsUnitOfWork
from shared.audit import RefusalRecorder
from shared.carecircle import NotInCircle
from shared.errors import Forbidden, NotFound
from shared.events import Role
from shared.fhir.builders import TASK_CODE_SYSTEM
from shared.fhir.models import Bundle, CareTeam, to_json
from shared.identifiers import ORGANISATION

IDNST_OR_LOCAL = ORGANISATION
# Category "Cercle de soins" of a treating team (LOINC "Longitudinal care-coordination focused care team").
CARETEAM_CATEGORY = {
    "system": "http://loinc.org",
    "code": "LA27976-2",
    "display": "Longitudinal care-coordination focused care team",
}
BASE = "/admissions/fhir"


def _instant(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    # SQLite hands timestamps back naive; they were stored in UTC.
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).isoformat()


def _period(start: datetime | None, end: datetime | None) -> dict[str, str]:
    period = {"start": _instant(start)}
    if end is not None:
        period["end"] = _instant(end)
    return {k: v for k, v in period.items() if v}


def role_concept(role: str) -> dict[str, Any]:
    """A stored role as FHIR: Relais' code (with the IG's TRE_R259 PCP for the médecin traitant) or a TRE_R260 class."""
    if role.startswith(cercle.TRE_R260_ROLE):
        return {"coding": [{"system": cercle.TRE_R260, "code": role.removeprefix(cercle.TRE_R260_ROLE)}]}
    coding = [{"system": domain.CARETEAM_ROLE_SYSTEM, "code": role, "display": domain.ROLE_DISPLAY.get(role, role)}]
    if role == domain.ROLE_MEDECIN_TRAITANT:
        coding.append({"system": cercle.TRE_R259, "code": "PCP", "display": "Médecin traitant"})
    return {"coding": coding}


def member_reference(system: str, value: str, display: str | None) -> dict[str, Any]:
    """A member by identifier; one known by its literal reference keeps its resource type (RelatedPerson...)."""
    member: dict[str, Any] = {"identifier": {"system": system, "value": value}}
    by_reference = system == cercle.MEMBER_REFERENCE and "/" in value
    kind = value.split("/")[0] if by_reference else cercle.MEMBER_TYPES.get(system)
    if kind and kind[:1].isupper() and kind.isalpha():
        member["type"] = kind
    if display:
        member["display"] = display
    return member


def careteam(team: CareTeamRow, participants: Sequence[CareTeamParticipantRow]) -> dict[str, Any]:
    resource = {
        "resourceType": "CareTeam",
        "id": team.id,
        "meta": {"versionId": str(team.version)},
        "status": team.status,
        "category": [{"coding": [CARETEAM_CATEGORY]}],
        "name": team.name or "Équipe traitante",
        "subject": {"identifier": {"system": team.subject_system, "value": team.subject_value}},
        "period": _period(team.started_at, team.ended_at),
        "participant": [
            {
                "role": [role_concept(p.role)],
                "member": member_reference(p.member_system, p.member_value, p.member_display),
                "onBehalfOf": {"identifier": {"system": IDNST_OR_LOCAL, "value": team.team_org_id}},
                "period": _period(p.period_start, p.period_end),
            }
            for p in participants
        ],
        "managingOrganization": [{"identifier": {"system": IDNST_OR_LOCAL, "value": team.team_org_id}}],
    }
    return to_json(CareTeam.model_validate(resource))


def searchset(resources: Sequence[dict[str, Any]], self_url: str) -> dict[str, Any]:
    bundle = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(resources),
        "link": [{"relation": "self", "url": self_url}],
        "entry": [
            {"fullUrl": f"{BASE}/{r['resourceType']}/{r['id']}", "resource": r, "search": {"mode": "match"}}
            for r in resources
        ],
    }
    return to_json(Bundle.model_validate(bundle))


def dac_case(case: DacCase) -> dict[str, Any]:
    return {
        "id": case.id,
        "patient_key": case.patient_key,
        "dac": case.dac_org_id,
        "opened_at": _instant(case.opened_at),
        "closed_at": _instant(case.closed_at),
        "status": "open" if case.closed_at is None else "closed",
    }


def dac_referral(case: DacCase) -> dict[str, Any]:
    """What the referrer is told: its case, the DAC it named; never another DAC's case nor the patient key."""
    return {
        "id": case.id,
        "dac": case.dac_org_id,
        "opened_at": _instant(case.opened_at),
        "status": "open" if case.closed_at is None else "closed",
    }


def team_change_for_requester(change: TeamChangeRow) -> dict[str, Any]:
    """The requesting team sees its own request and CareTeam, never who treats the patient now."""
    return {
        "id": change.id,
        "careteam": change.careteam_id,
        "status": change.status,
        "requested_at": _instant(change.requested_at),
        "expires_at": _instant(change.expires_at),
        "decided_at": _instant(change.decided_at),
    }


def team_change_for_current_team(change: TeamChangeRow, current: CareTeamRow | None) -> dict[str, Any]:
    """The current team sees who asks (to decide) and which of its CareTeams the request is about."""
    return {
        **team_change_for_requester(change),
        "careteam": current.id if current is not None else None,
        "requested_by": change.to_team_org_id,
        "subject": (
            {"system": current.subject_system, "value": current.subject_value} if current is not None else None
        ),
    }


def team_change_task(change: TeamChangeRow, current: CareTeamRow) -> dict[str, Any]:
    """The request as the FHIR Task the current team is notified of: who asks, for which of its CareTeams,
    until when, and the two operations that answer it."""
    base = f"/admissions/team-changes/{change.id}"
    return {
        "resourceType": "Task",
        "id": change.id,
        "status": "requested",
        "intent": "proposal",
        "code": {
            "coding": [{"system": TASK_CODE_SYSTEM, "code": "change-of-treating-team"}],
            "text": "Another team asks to become the patient's treating team",
        },
        "for": {"identifier": {"system": current.subject_system, "value": current.subject_value}},
        "focus": {"reference": f"CareTeam/{current.id}"},
        "requester": {"identifier": {"value": change.to_team_org_id}},
        "owner": {"identifier": {"value": current.team_org_id}},
        "authoredOn": _instant(change.requested_at),
        "restriction": {"period": {"end": _instant(change.expires_at)}},
        "input": [
            {"type": {"text": "accept"}, "valueString": f"{base}/$accept"},
            {"type": {"text": "decline"}, "valueString": f"{base}/$decline"},
        ],
    }


def team_changes(uow: AdmissionsUnitOfWork, team_org_id: str) -> dict[str, list[dict[str, Any]]]:
    with uow:
        to_answer = [
            team_change_for_current_team(c, uow.careteams.active_for_patient(c.patient_key))
            for c in uow.team_changes.pending_for_current_team(team_org_id)
        ]
        requested = [team_change_for_requester(c) for c in uow.team_changes.by_requester(team_org_id)]
        return {"to_answer": to_answer, "requested": requested}


def territory(row: Territory) -> dict[str, Any]:
    return {"postal_code": row.postal_code, "cpts": row.cpts_org_id, "dac": row.dac_org_id}


# --- reads of the registry (each in its own unit of work, no writes) -------------------------------------


@dataclass(frozen=True)
class CareTeamView:
    resource: dict[str, Any]
    id: str


@dataclass(frozen=True)
class EnrolmentRecorded:
    """The one answer to an enrolment, whether the patient had no team, this team, or another (202)."""

    careteam_id: str


def render(uow: AdmissionsUnitOfWork, team: CareTeamRow) -> CareTeamView:
    return CareTeamView(careteam(team, uow.careteams.participants(team.id)), team.id)


class ForeignRecord(NotFound):
    """Another organisation's record: answered as absent (404); whoever catches it once the unit of work is
    closed (the message bus, a read) has the kernel audit the attempt, in a transaction of its own."""

    def __init__(self, what: str, *, action: str, organisation_id: str, role: Role, reason: str) -> None:
        super().__init__(f"no {what}")
        self.what, self.action, self.reason = what, action, reason
        self.organisation_id, self.role = organisation_id, role

    def record(self, record_refusal: RefusalRecorder) -> None:
        record_refusal(
            self.action,
            organisation_id=self.organisation_id,
            role=self.role.value,
            resource=self.what.replace(" ", "/"),
            reason=self.reason,
        )


class OutsideCircle(NotInCircle):
    """The caller is not in the patient's care circle (or the patient is unknown): the kernel's one 404, audited
    once the unit of work is closed, like ForeignRecord."""

    def __init__(self, what: str, *, action: str, organisation_id: str, role: Role, known: bool) -> None:
        super().__init__(what)
        self.action, self.organisation_id, self.role, self.known = action, organisation_id, role, known

    def record(self, record_refusal: RefusalRecorder) -> None:
        reason = "patient outside the caller's care circle" if self.known else "patient unknown"
        record_refusal(
            self.action, organisation_id=self.organisation_id, role=self.role.value, resource=None, reason=reason
        )


class OppositionStands(Forbidden):
    """A `permit` from someone who may not lift the patient's standing opposition: 403, audited once the unit of
    work is closed. The text names nobody: not who recorded the opposition, nor who treats the patient."""

    def __init__(self, what: str, *, organisation_id: str, role: Role) -> None:
        super().__init__(
            "the patient's opposition to sharing stands: only the organisation that recorded it, or the treating "
            "team of that time, may lift it",
            expression=["Consent.provision.type"],
        )
        self.what, self.organisation_id, self.role = what, organisation_id, role

    def record(self, record_refusal: RefusalRecorder) -> None:
        record_refusal(
            "consent.lift", organisation_id=self.organisation_id, role=self.role.value, resource=self.what,
            reason="not the opposition's recorder nor the treating team of that time",
        )


def own_careteam(uow: AdmissionsUnitOfWork, team_org_id: str, careteam_id: str, action: str) -> CareTeamRow:
    """The caller's care team; another team's looks absent (ForeignRecord: a 404 that gets audited)."""
    team = uow.careteams.get(careteam_id)
    if team is None:
        raise NotFound(f"no CareTeam {careteam_id}")
    if team.team_org_id != team_org_id:
        reason = "care team of another organisation"
        raise ForeignRecord(
            f"CareTeam {careteam_id}", action=action, organisation_id=team_org_id, role=Role.TEAM, reason=reason
        )
    return team


def read_careteam(
    uow: AdmissionsUnitOfWork, record_refusal: RefusalRecorder, team_org_id: str, careteam_id: str
) -> CareTeamView:
    try:
        with uow:
            return render(uow, own_careteam(uow, team_org_id, careteam_id, "careteam.read"))
    except ForeignRecord as foreign:
        foreign.record(record_refusal)
        raise


def list_careteams(uow: AdmissionsUnitOfWork, team_org_id: str, status: str | None = None) -> list[CareTeamView]:
    with uow:
        return [render(uow, team) for team in uow.careteams.for_team(team_org_id, status)]


# --- read-backs of what a caller wrote or may see ------------------------------------------------------------


def consent_for(uow: AdmissionsUnitOfWork, principal_org: str, role: Role, patient_key: str) -> dict[str, Any]:
    """The patient's consent for whoever recorded it (or its standing opposition), treats the patient, or
    administers Relais; anyone else gets 404, as for a patient Relais does not know (the answer never reveals who
    else is in the care circle). A lifted opposition is shown to its recorder: who lifted it, in what capacity."""
    with uow:
        row = uow.consents.get(patient_key)
        team = uow.careteams.active_for_patient(patient_key)
        readers = {row.recorded_by, row.opposed_by, team.team_org_id if team else None} if row else set()
        if row is None or (role is not Role.ADMIN and principal_org not in readers):
            raise NotFound("no consent recorded for this patient that you may read")
        view: dict[str, Any] = {
            "patient_key": patient_key,
            "provision": "deny" if row.opposed else "permit",
            "recorded_at": _instant(row.recorded_at),
            "recorded_by_you": row.recorded_by == principal_org,
        }
        if row.lifted_at is not None:
            capacity = "recorder" if row.lifted_by == (row.opposed_by or row.recorded_by) else "team-at-opposition"
            view["opposition_lifted"] = {"at": _instant(row.lifted_at), "by": capacity}
        if role is Role.ADMIN:  # the administrator answers the patient's "who changed my choice?"
            view.update(recorded_by=row.recorded_by, opposed_by=row.opposed_by, lifted_by=row.lifted_by)
        return view


def dac_cases_of(uow: AdmissionsUnitOfWork, dac_org_id: str, *, open_only: bool) -> list[dict[str, Any]]:
    with uow:
        return [dac_case(case) for case in uow.dac_cases.for_dac(dac_org_id, open_only=open_only)]


def territories_for(uow: AdmissionsUnitOfWork, covered_by: str | None) -> list[dict[str, Any]]:
    with uow:
        return [territory(row) for row in uow.territories.listed(covered_by)]
