"""The care-circle policy: is this caller in this patient's care circle, and for what (docs/privacy.md, and
docs/architecture.md#the-patient-data-boundary).

Pure functions over facts the service supplies (its registry, or its mirror of it). Every route that takes a
patient identifier, or a resource about a patient, asks `require` before it answers. A caller outside the circle
gets the very answer an unknown patient gets (404, same body), so nobody learns who else treats a patient.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from shared.errors import NotFound
from shared.events import Role


class Share(StrEnum):
    """What a member of the circle may have of the patient."""

    NONE = "none"
    FULL = "full"  # the current treating team
    OWN_ENCOUNTERS = "own-encounters"  # a hospital that admitted (or discharged) the patient: its own stays
    CASE = "case"  # a DAC with an open case: the case's clinical picture
    MINIMISED = "minimised"  # the CPTS of the patient's territory: minimised facts only


class Purpose(StrEnum):
    """What the caller asks to do about the patient."""

    READ_CLINICAL = "read-clinical"  # a CareTeam, a Task, an admission or discharge at full detail
    READ_MINIMISED = "read-minimised"  # counts, an orientation on minimised facts
    RECORD_CONSENT = "record-consent"
    REFER_TO_DAC = "refer-to-dac"
    ANSWER_TEAM_CHANGE = "answer-team-change"  # only the current team may accept or decline a change of team
    SUBSCRIBE = "subscribe"  # a per-patient subscription (NdE, FHIR Subscription with a patient filter)


# Rules are data: which shares may do what. A hospital is limited to its own encounters by the caller's query.
ALLOWED: dict[Purpose, frozenset[Share]] = {
    Purpose.READ_CLINICAL: frozenset({Share.FULL, Share.OWN_ENCOUNTERS, Share.CASE}),
    Purpose.READ_MINIMISED: frozenset({Share.FULL, Share.OWN_ENCOUNTERS, Share.CASE, Share.MINIMISED}),
    Purpose.RECORD_CONSENT: frozenset({Share.FULL, Share.OWN_ENCOUNTERS}),
    Purpose.REFER_TO_DAC: frozenset({Share.FULL, Share.OWN_ENCOUNTERS}),
    Purpose.ANSWER_TEAM_CHANGE: frozenset({Share.FULL}),
    Purpose.SUBSCRIBE: frozenset({Share.FULL, Share.OWN_ENCOUNTERS, Share.CASE}),
}


@dataclass(frozen=True)
class CircleFacts:
    """Who is linked to one patient, as the asking service knows it."""

    team_org_id: str | None = None  # the current (active) treating team
    hospitals: frozenset[str] = frozenset()  # hospitals with the patient admitted, or that discharged them
    dac_cases: frozenset[str] = frozenset()  # DACs with an open case
    cpts_org_id: str | None = None  # the CPTS covering the patient's territory of residence

    @property
    def known(self) -> bool:
        return bool(self.team_org_id or self.hospitals or self.dac_cases)


def share(role: Role | str, organisation_id: str, facts: CircleFacts) -> Share:
    """The caller's share of the patient: the strongest link its role can have, or NONE."""
    role = Role(role)
    if role is Role.TEAM and facts.team_org_id == organisation_id:
        return Share.FULL
    if role is Role.HOSPITAL and organisation_id in facts.hospitals:
        return Share.OWN_ENCOUNTERS
    if role is Role.DAC and organisation_id in facts.dac_cases:
        return Share.CASE
    if role is Role.CPTS and facts.cpts_org_id == organisation_id:
        return Share.MINIMISED
    return Share.NONE


def allows(role: Role | str, organisation_id: str, facts: CircleFacts, purpose: Purpose) -> bool:
    return share(role, organisation_id, facts) in ALLOWED[purpose]


class NotInCircle(NotFound):
    """The caller is not in the patient's circle for this purpose. Its text is built from what the caller sent,
    never from what Relais knows, so a foreign patient and an unknown one get the same 404."""

    def __init__(self, what: str, *, expression: list[str] | None = None) -> None:
        super().__init__(not_found_text(what), expression=expression)
        self.what = what


def not_found_text(what: str) -> str:
    """The one text of a patient (or a resource about one) outside the caller's circle, or unknown."""
    return f"no {what} in your care circle"


def require(role: Role | str, organisation_id: str, facts: CircleFacts, purpose: Purpose, what: str) -> Share:
    """The caller's share if it may do `purpose`; else NotInCircle (404), whether the patient is known or not."""
    found = share(role, organisation_id, facts)
    if found not in ALLOWED[purpose]:
        raise NotInCircle(what)
    return found
