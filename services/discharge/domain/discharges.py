"""Pure rules of a discharge: the message's checks, complexity, readmission, the default plan, routing context
and who hears of a correction."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import NoReturn

from services.discharge.domain.model import (
    CANCELLATION_STATUSES,
    COMPLEXITY_SYSTEM,
    DEFAULT_GP_VISIT,
    DISCHARGE_STATUSES,
    READMISSION_30D,
    DischargeStatus,
    FollowupPlanItem,
    MirrorState,
    TerritoryState,
    as_utc,
)
from shared.errors import Conflict, Forbidden, Unprocessable
from shared.events import EventType
from shared.routing import PatientContext, Recipient, is_complex

# ICD-10 prefixes that make a Condition count as a complexity criterion (seed examples: docs/architecture.md, Routing).
ICD10_CRITERIA: tuple[tuple[str, str], ...] = (
    ("C", "cancer"),
    ("E10", "diabetes"),
    ("E11", "diabetes"),
    ("E12", "diabetes"),
    ("E13", "diabetes"),
    ("E14", "diabetes"),
    ("N17", "renal-failure"),
    ("N18", "renal-failure"),
    ("N19", "renal-failure"),
    ("F", "mental-health"),
    ("R54", "frailty"),
    ("Z59", "precarity"),
    ("Z60.2", "isolation"),
)
ICD10_SYSTEMS = frozenset({"http://hl7.org/fhir/sid/icd-10", "http://hl7.org/fhir/sid/icd-10-fr"})


def check_encounter_status(event_type: EventType, status: str) -> None:
    allowed = CANCELLATION_STATUSES if event_type is EventType.DISCHARGE_CANCELLED else DISCHARGE_STATUSES
    if status not in allowed:
        raise Unprocessable(
            f"Encounter.status {status!r} does not describe a discharge; expected one of " + ", ".join(sorted(allowed)),
            expression=["Encounter.status"],
        )


def check_hospital(caller_org_id: str, finess: str) -> None:
    if caller_org_id != finess:
        raise Forbidden(
            f"the message is sent for hospital FINESS {finess}, but your organisation is {caller_org_id}",
            expression=["MessageHeader.sender"],
        )


def criteria_from_condition(codes: Iterable[tuple[str | None, str | None]]) -> set[str]:
    """Complexity criteria named by a Condition's codings: Relais codes as they are, ICD-10 by prefix."""
    found: set[str] = set()
    for system, code in codes:
        if not code:
            continue
        if system == COMPLEXITY_SYSTEM:
            found.add(code.strip().lower())
        elif system in ICD10_SYSTEMS:
            normalised = code.strip().upper()
            for prefix, criterion in ICD10_CRITERIA:
                if normalised.startswith(prefix):
                    found.add(criterion)
    return found


def is_readmission(prior_discharges: Iterable[datetime], started_at: datetime | None, window: timedelta) -> bool:
    """Admitted again within `window` after an earlier discharge of the same patient."""
    if started_at is None:
        return False
    return any(d <= started_at and started_at - d <= window for d in prior_discharges)


def complexity(flags: Iterable[str], readmission: bool, criteria: frozenset[str]) -> tuple[frozenset[str], bool]:
    """All criteria met (readmission counts as one) and whether they make the case complex."""
    met = {f.strip().lower() for f in flags}
    if readmission:
        met.add(READMISSION_30D)
    return frozenset(met), is_complex(met, criteria)


def default_followups(discharged_at: datetime) -> tuple[FollowupPlanItem, ...]:
    code, display, delay = DEFAULT_GP_VISIT
    return (FollowupPlanItem(code, display, discharged_at + delay),)


def check_first_discharge(encounter_key: str, existing_message_id: str | None) -> None:
    if existing_message_id is not None:
        raise Conflict(
            f"encounter {encounter_key} was already discharged (message {existing_message_id}); "
            "send revise-discharge or cancel-discharge to change it",
            expression=["Encounter.identifier"],
        )


def refuse_without_original(encounter_key: str, event_type: EventType) -> NoReturn:
    raise Unprocessable(
        f"no discharge is known for encounter {encounter_key}: a {event_type.value} needs the original first",
        expression=["Encounter.identifier"],
    )


def check_not_cancelled(encounter_key: str, status: str) -> None:
    """A correction or cancellation of a cancelled discharge is a conflict."""
    if status == DischargeStatus.CANCELLED:
        raise Conflict(f"the discharge of encounter {encounter_key} was cancelled", expression=["Encounter.identifier"])


# The one note of every recorded discharge, team or not: the answer never tells whether the patient has a team.
DISCHARGE_RECORDED_NOTE = (
    "discharge recorded: the patient's treating team is asked to take the patient over or, when there is none, "
    "the CPTS of the territory is asked to find one; follow this discharge's Tasks with GET /discharge/fhir/Task"
)


def recording_notes(
    *,
    readmission: bool,
    complex_case: bool,
    criteria_met: Iterable[str],
    has_letter: bool,
) -> list[str]:
    """What the hospital is told about a recorded discharge: the same words whether or not a team was found."""
    notes = [DISCHARGE_RECORDED_NOTE]
    if readmission:
        notes.append("readmission within 30 days of an earlier discharge: counted as a complexity criterion")
    if complex_case:
        notes.append("complex situation by criteria: " + ", ".join(sorted(criteria_met)))
    if not has_letter:
        notes.append("no liaison letter (DocumentReference) in the message: send it with a revise-discharge")
    return notes


def patient_context(
    *,
    mirror: MirrorState | None,
    territory: TerritoryState | None,
    hospital_org_id: str | None,
    complex_case: bool,
    team_org_id: str | None = None,
    handoff_failed: bool = False,
    escalation_level: int = 0,
    encounter_key: str | None = None,
) -> PatientContext:
    """Routing context; `team_org_id` pins the team a handoff targeted, whatever the mirror says now."""
    mirror = mirror or MirrorState()
    territory = territory or TerritoryState()
    team = team_org_id if team_org_id is not None else (mirror.team_org_id if mirror.team_active else None)
    # The DAC already following the patient (or, on a hospital's referral, this stay) comes first; else the
    # territory's. A hospital's referral never opens another hospital's stays to the DAC.
    case_dac = mirror.dac_org_id if mirror.dac_case_open else mirror.stay_dac(hospital_org_id, encounter_key)
    return PatientContext(
        team_org_id=team,
        hospital_org_id=hospital_org_id,
        cpts_org_id=territory.cpts_org_id,
        dac_org_id=case_dac or territory.dac_org_id,
        dac_case_open=case_dac is not None,
        complex_case=complex_case,
        consent_opposed=mirror.consent_opposed,
        handoff_failed=handoff_failed,
        escalation_level=escalation_level,
    )


def correction_recipients(original: list[Recipient], event_type: EventType) -> list[Recipient]:
    """A correction or cancellation goes to the original's recipients, nobody else, at the same detail."""
    reason = f"{event_type.value}/original-recipient"
    return [Recipient(r.role, r.organisation_id, r.detail, r.topic, reason) for r in original]


def awaited_its_team(
    *,
    team_org_id: str | None,
    status: str,
    recorded_at: datetime,
    enrolled_at: datetime | None,
    now: datetime,
    window: timedelta,
) -> bool:
    """A discharge recorded without a team after a team had enrolled the patient: the enrolment was still on its way
    to this service (it travels on the bus), so the discharge was that team's all along. Only while a handoff could
    still be answered (`window`); a team that enrolled the patient after the discharge is the orientation's business."""
    if team_org_id is not None or status == DischargeStatus.CANCELLED or enrolled_at is None:
        return False
    recorded = as_utc(recorded_at)
    return as_utc(enrolled_at) <= recorded and as_utc(now) - recorded <= window
