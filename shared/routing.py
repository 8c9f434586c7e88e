"""Who gets what (docs/architecture.md#routing-who-gets-what): one table of rules, applied by a pure `route`."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from shared.events import (
    TOPIC_NOTIFY_CPTS,
    TOPIC_NOTIFY_DAC,
    TOPIC_NOTIFY_TEAM,
    EventType,
    Role,
)


class Detail(StrEnum):
    """How much of the event a recipient may see."""

    FULL = "full"  # clinical payload, for members of the care team
    MINIMISED = "minimised"  # pseudonymous key, commune, age band, event type and times
    ORGANISATIONAL = "organisational"  # counts and organisational facts only, no patient data

    @property
    def rank(self) -> int:
        # Higher rank wins when two rules give the same recipient.
        return _DETAIL_RANK[self]


_DETAIL_RANK = {Detail.ORGANISATIONAL: 0, Detail.MINIMISED: 1, Detail.FULL: 2}


@dataclass(frozen=True)
class PatientContext:
    """What routing needs to know about the patient at the time of the event; computed elsewhere."""

    team_org_id: str | None
    hospital_org_id: str | None
    cpts_org_id: str | None
    dac_org_id: str | None
    dac_case_open: bool = False
    complex_case: bool = False
    consent_opposed: bool = False
    handoff_failed: bool = False
    escalation_level: int = 0
    # False for a patient known only by a local identifier: their consent cannot be checked (docs/architecture.md).
    identity_verified: bool = True


@dataclass(frozen=True)
class Recipient:
    role: Role
    organisation_id: str
    detail: Detail
    topic: str
    reason: str


@dataclass(frozen=True)
class Condition:
    """A named pure predicate over PatientContext, so the table stays data and audit logs read well."""

    name: str
    test: Callable[[PatientContext], bool]

    def __call__(self, ctx: PatientContext) -> bool:
        return self.test(ctx)


def any_of(*conditions: Condition) -> Condition:
    return Condition(
        "_or_".join(c.name for c in conditions),
        lambda ctx: any(c(ctx) for c in conditions),
    )


def all_of(*conditions: Condition) -> Condition:
    return Condition(
        "_and_".join(c.name for c in conditions),
        lambda ctx: all(c(ctx) for c in conditions),
    )


ALWAYS = Condition("always", lambda ctx: True)
HAS_TEAM = Condition("has_team", lambda ctx: ctx.team_org_id is not None)
NO_TEAM = Condition("no_team", lambda ctx: ctx.team_org_id is None)
DAC_CASE_OPEN = Condition("dac_case_open", lambda ctx: ctx.dac_case_open)
COMPLEX = Condition("complex", lambda ctx: ctx.complex_case)
HANDOFF_FAILED = Condition("handoff_failed", lambda ctx: ctx.handoff_failed)
ESCALATED = Condition("escalated", lambda ctx: ctx.escalation_level >= 1)
COMPLEX_OR_DAC_CASE_OPEN = any_of(COMPLEX, DAC_CASE_OPEN)
NO_TEAM_OR_HANDOFF_FAILED = any_of(NO_TEAM, HANDOFF_FAILED)
ESCALATED_AND_COMPLEX = all_of(ESCALATED, COMPLEX)


ROLE_TOPICS: dict[Role, str] = {
    Role.TEAM: TOPIC_NOTIFY_TEAM,
    Role.HOSPITAL: TOPIC_NOTIFY_TEAM,  # the hospital referent reads the same clinical feed as a team
    Role.CPTS: TOPIC_NOTIFY_CPTS,
    Role.DAC: TOPIC_NOTIFY_DAC,
}
_ROLE_ORDER = {Role.TEAM: 0, Role.HOSPITAL: 1, Role.CPTS: 2, Role.DAC: 3}
# Outside the care team: what leaves for these roles needs the patient not to have opposed sharing.
_BEYOND_CARE_TEAM = frozenset({Role.CPTS, Role.DAC})


@dataclass(frozen=True)
class Rule:
    event: EventType
    role: Role
    detail: Detail
    when: Condition = ALWAYS

    def __post_init__(self) -> None:
        # A row for a role without a notify topic is a table bug; fail at import, not at routing time.
        if self.role not in ROLE_TOPICS:
            raise ValueError(f"role {self.role} cannot receive notifications")

    @property
    def name(self) -> str:
        # Stable, readable id recorded as Recipient.reason for audit.
        return f"{self.event.value}/{self.role.value}/{self.detail.value}/{self.when.name}"


def _rows(
    events: Iterable[EventType], role: Role, detail: Detail, when: Condition = ALWAYS
) -> tuple[Rule, ...]:
    # One line of the routing table (docs/architecture.md) often covers several events (a correction follows
    # its original).
    return tuple(Rule(e, role, detail, when) for e in events)


ADMISSION_EVENTS = (
    EventType.ADMISSION_RECORDED,
    EventType.ADMISSION_CORRECTED,
    EventType.ADMISSION_CANCELLED,
)
DISCHARGE_EVENTS = (
    EventType.DISCHARGE_RECORDED,
    EventType.DISCHARGE_CORRECTED,
    EventType.DISCHARGE_CANCELLED,
)
HANDOFF_OPEN_EVENTS = (EventType.HANDOFF_PROPOSED, EventType.HANDOFF_ACCEPTED)
HANDOFF_FAILED_EVENTS = (EventType.HANDOFF_DECLINED, EventType.HANDOFF_EXPIRED)
SNP_REQUEST_EVENTS = (EventType.SNP_REQUESTED, EventType.SNP_OFFERED)
SNP_OUTCOME_EVENTS = (EventType.SNP_BOOKED, EventType.SNP_FULFILLED, EventType.SNP_NOSHOW)
# Domain events and receipts, deliberately absent from the table: nobody is notified of them.
UNROUTED_EVENTS = frozenset(
    {
        EventType.CARETEAM_CHANGED,
        EventType.CARETEAM_ASSIGNED,
        EventType.TERRITORY_CHANGED,
        EventType.NOTIFICATION_READ,
    }
)

ROUTING_TABLE: tuple[Rule, ...] = (
    # admission: the team; the CPTS only when there is no team; the DAC only with an open case
    *_rows(ADMISSION_EVENTS, Role.TEAM, Detail.FULL, HAS_TEAM),
    *_rows(ADMISSION_EVENTS, Role.CPTS, Detail.MINIMISED, NO_TEAM),
    *_rows(ADMISSION_EVENTS, Role.DAC, Detail.FULL, DAC_CASE_OPEN),
    # discharge: the team with handoff and follow-up plan; CPTS if no team or handoff failed; DAC if complex
    *_rows(DISCHARGE_EVENTS, Role.TEAM, Detail.FULL, HAS_TEAM),
    *_rows(DISCHARGE_EVENTS, Role.CPTS, Detail.MINIMISED, NO_TEAM_OR_HANDOFF_FAILED),
    *_rows(DISCHARGE_EVENTS, Role.DAC, Detail.FULL, COMPLEX_OR_DAC_CASE_OPEN),
    # referent handoff: both sides; on failure the CPTS finds another team, the DAC steps in if complex
    *_rows(HANDOFF_OPEN_EVENTS, Role.TEAM, Detail.FULL),
    *_rows(HANDOFF_OPEN_EVENTS, Role.HOSPITAL, Detail.FULL),
    *_rows(HANDOFF_FAILED_EVENTS, Role.TEAM, Detail.FULL),
    *_rows(HANDOFF_FAILED_EVENTS, Role.HOSPITAL, Detail.FULL),
    *_rows(HANDOFF_FAILED_EVENTS, Role.CPTS, Detail.MINIMISED),
    *_rows(HANDOFF_FAILED_EVENTS, Role.DAC, Detail.FULL, COMPLEX),
    # the hospital withdrew its handoff: both sides learn it, nobody else was involved yet
    Rule(EventType.HANDOFF_CANCELLED, Role.TEAM, Detail.FULL),
    Rule(EventType.HANDOFF_CANCELLED, Role.HOSPITAL, Detail.FULL),
    # orientation: the CPTS owns it; the proposed team decides on minimised facts, full once it accepts
    Rule(EventType.ORIENTATION_REQUESTED, Role.CPTS, Detail.MINIMISED),
    Rule(EventType.ORIENTATION_ASSIGNED, Role.TEAM, Detail.MINIMISED),
    Rule(EventType.ORIENTATION_ACCEPTED, Role.TEAM, Detail.FULL),
    Rule(EventType.ORIENTATION_ACCEPTED, Role.HOSPITAL, Detail.FULL),
    Rule(EventType.ORIENTATION_ACCEPTED, Role.CPTS, Detail.MINIMISED),
    Rule(EventType.ORIENTATION_RETURNED, Role.HOSPITAL, Detail.FULL),
    Rule(EventType.ORIENTATION_RETURNED, Role.CPTS, Detail.MINIMISED),
    Rule(EventType.ORIENTATION_RETURNED, Role.DAC, Detail.FULL, COMPLEX),
    # follow-up: the team referent first; CPTS then DAC (if complex) once escalated
    Rule(EventType.FOLLOWUP_DUE, Role.TEAM, Detail.FULL),
    Rule(EventType.FOLLOWUP_MISSED, Role.TEAM, Detail.FULL),
    Rule(EventType.FOLLOWUP_MISSED, Role.CPTS, Detail.MINIMISED, ESCALATED),
    Rule(EventType.FOLLOWUP_MISSED, Role.DAC, Detail.FULL, ESCALATED_AND_COMPLEX),
    # SNP: offered to the patient's own team first; the CPTS sees the territory pool as counts
    *_rows(SNP_REQUEST_EVENTS, Role.TEAM, Detail.FULL, HAS_TEAM),
    *_rows(SNP_REQUEST_EVENTS, Role.CPTS, Detail.ORGANISATIONAL),
    *_rows(SNP_OUTCOME_EVENTS, Role.CPTS, Detail.ORGANISATIONAL),
    # a cancelled appointment: the effecteur holding it, and the CPTS counts
    Rule(EventType.SNP_CANCELLED, Role.TEAM, Detail.FULL, HAS_TEAM),
    Rule(EventType.SNP_CANCELLED, Role.CPTS, Detail.ORGANISATIONAL),
    Rule(EventType.SNP_EXPIRED, Role.CPTS, Detail.MINIMISED),  # unplaced within 48 h: the CPTS reorients
    # another team asks for the patient: only the current team, which answers, hears of it
    Rule(EventType.CARETEAM_CHANGE_REQUESTED, Role.TEAM, Detail.FULL, HAS_TEAM),
    # a patient of a team's list is about to age out: the team, which confirms it by uploading its list again
    Rule(EventType.CARETEAM_EXPIRING, Role.TEAM, Detail.FULL, HAS_TEAM),
)


def topic_for(role: Role) -> str:
    try:
        return ROLE_TOPICS[role]
    except KeyError:
        raise ValueError(f"role {role} has no notification topic") from None


def _organisation_for(role: Role, ctx: PatientContext) -> str | None:
    return {
        Role.TEAM: ctx.team_org_id,
        Role.HOSPITAL: ctx.hospital_org_id,
        Role.CPTS: ctx.cpts_org_id,
        Role.DAC: ctx.dac_org_id,
    }.get(role)


def _consent_allows(role: Role, detail: Detail, ctx: PatientContext) -> bool:
    # Counts carry no patient data, so neither opposition nor an unverified identity stops them.
    if role not in _BEYOND_CARE_TEAM or detail is Detail.ORGANISATIONAL:
        return True
    return not ctx.consent_opposed and ctx.identity_verified


def route(
    event: EventType, ctx: PatientContext, table: Iterable[Rule] = ROUTING_TABLE
) -> list[Recipient]:
    """Recipients of `event`: one per (organisation, role), in order team, hospital, cpts, dac."""
    best: dict[tuple[str, Role], Recipient] = {}
    for rule in table:
        if rule.event != event or not rule.when(ctx):
            continue
        org = _organisation_for(rule.role, ctx)
        if org is None or not _consent_allows(rule.role, rule.detail, ctx):
            continue
        candidate = Recipient(rule.role, org, rule.detail, topic_for(rule.role), rule.name)
        key = (org, rule.role)
        # Consent is filtered before dedup so a dropped MINIMISED row never hides an allowed one.
        if key not in best or candidate.detail.rank > best[key].detail.rank:
            best[key] = candidate
    return sorted(best.values(), key=lambda r: (_ROLE_ORDER[r.role], r.organisation_id))


COMPLEXITY_CRITERIA: frozenset[str] = frozenset(
    {
        "cancer",
        "diabetes",
        "renal-failure",
        "mental-health",
        "frailty",
        "precarity",
        "isolation",
        "readmission-30d",
        "hospital-request",
    }
)


def is_complex(flags: Iterable[str], criteria: frozenset[str] = COMPLEXITY_CRITERIA) -> bool:
    # Flags come from several systems; compare codes case- and space-insensitively.
    wanted = {c.strip().lower() for c in criteria}
    return any(f.strip().lower() in wanted for f in flags)


def recipients_to_json(recipients: Iterable[Recipient]) -> list[dict[str, str]]:
    """Recipients as stored with a message, so corrections reach exactly the original's recipients."""
    return [
        {
            "role": r.role.value,
            "organisation_id": r.organisation_id,
            "detail": r.detail.value,
            "topic": r.topic,
            "reason": r.reason,
        }
        for r in recipients
    ]


def recipients_from_json(items: Iterable[Mapping[str, str]]) -> list[Recipient]:
    return [
        Recipient(Role(i["role"]), i["organisation_id"], Detail(i["detail"]), i["topic"], i["reason"]) for i in items
    ]
