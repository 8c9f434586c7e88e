"""The routing table (docs/architecture.md#routing-who-gets-what), one behaviour per test."""

from __future__ import annotations

from dataclasses import replace

import pytest

from shared.events import TOPIC_NOTIFY_CPTS, TOPIC_NOTIFY_DAC, TOPIC_NOTIFY_TEAM, EventType, Role
from shared.routing import (
    ALWAYS,
    COMPLEXITY_CRITERIA,
    HAS_TEAM,
    NO_TEAM,
    ROUTING_TABLE,
    UNROUTED_EVENTS,
    Condition,
    Detail,
    PatientContext,
    Rule,
    all_of,
    any_of,
    is_complex,
    route,
)

E = EventType
TEAM, HOSPITAL, CPTS, DAC = "msp-lilas", "finess-750000001", "cpts-paris-20", "dac-paris-est"

WITH_TEAM = PatientContext(team_org_id=TEAM, hospital_org_id=HOSPITAL, cpts_org_id=CPTS, dac_org_id=DAC)
WITHOUT_TEAM = replace(WITH_TEAM, team_org_id=None)

ADMISSIONS = [E.ADMISSION_RECORDED, E.ADMISSION_CORRECTED, E.ADMISSION_CANCELLED]
DISCHARGES = [E.DISCHARGE_RECORDED, E.DISCHARGE_CORRECTED, E.DISCHARGE_CANCELLED]


def who(event: EventType, ctx: PatientContext) -> list[tuple[Role, str, Detail]]:
    return [(r.role, r.organisation_id, r.detail) for r in route(event, ctx)]


# admission (corrections and cancellations follow the original's recipients)


@pytest.mark.parametrize("event", ADMISSIONS)
def test_admission_with_team_goes_to_the_team_only(event):
    assert who(event, WITH_TEAM) == [(Role.TEAM, TEAM, Detail.FULL)]


@pytest.mark.parametrize("event", ADMISSIONS)
def test_admission_without_team_goes_minimised_to_the_cpts(event):
    assert who(event, WITHOUT_TEAM) == [(Role.CPTS, CPTS, Detail.MINIMISED)]


@pytest.mark.parametrize("event", ADMISSIONS)
def test_admission_with_open_dac_case_also_reaches_the_dac_in_full(event):
    ctx = replace(WITH_TEAM, dac_case_open=True)
    assert who(event, ctx) == [(Role.TEAM, TEAM, Detail.FULL), (Role.DAC, DAC, Detail.FULL)]


def test_admission_of_complex_case_without_open_dac_case_stays_away_from_the_dac():
    ctx = replace(WITH_TEAM, complex_case=True)
    assert who(E.ADMISSION_RECORDED, ctx) == [(Role.TEAM, TEAM, Detail.FULL)]


@pytest.mark.parametrize("event", ADMISSIONS)
def test_consent_opposition_keeps_admission_away_from_cpts_and_dac(event):
    ctx = replace(WITHOUT_TEAM, dac_case_open=True, consent_opposed=True)
    assert who(event, ctx) == []


def test_consent_opposition_still_lets_the_team_know_of_the_admission():
    ctx = replace(WITH_TEAM, dac_case_open=True, consent_opposed=True)
    assert who(E.ADMISSION_RECORDED, ctx) == [(Role.TEAM, TEAM, Detail.FULL)]


# discharge


@pytest.mark.parametrize("event", DISCHARGES)
def test_discharge_goes_in_full_to_the_team(event):
    assert who(event, WITH_TEAM) == [(Role.TEAM, TEAM, Detail.FULL)]


@pytest.mark.parametrize("event", DISCHARGES)
def test_discharge_without_team_goes_minimised_to_the_cpts(event):
    assert who(event, WITHOUT_TEAM) == [(Role.CPTS, CPTS, Detail.MINIMISED)]


def test_discharge_whose_handoff_failed_also_goes_minimised_to_the_cpts():
    ctx = replace(WITH_TEAM, handoff_failed=True)
    assert who(E.DISCHARGE_RECORDED, ctx) == [
        (Role.TEAM, TEAM, Detail.FULL),
        (Role.CPTS, CPTS, Detail.MINIMISED),
    ]


@pytest.mark.parametrize("event", DISCHARGES)
def test_discharge_of_complex_case_reaches_the_dac(event):
    ctx = replace(WITH_TEAM, complex_case=True)
    assert who(event, ctx) == [(Role.TEAM, TEAM, Detail.FULL), (Role.DAC, DAC, Detail.FULL)]


def test_discharge_with_open_dac_case_reaches_the_dac():
    ctx = replace(WITH_TEAM, dac_case_open=True)
    assert (Role.DAC, DAC, Detail.FULL) in who(E.DISCHARGE_RECORDED, ctx)


def test_consent_opposition_keeps_complex_discharge_within_the_care_team():
    ctx = replace(WITH_TEAM, complex_case=True, handoff_failed=True, consent_opposed=True)
    assert who(E.DISCHARGE_RECORDED, ctx) == [(Role.TEAM, TEAM, Detail.FULL)]


# referent handoff


@pytest.mark.parametrize("event", [E.HANDOFF_PROPOSED, E.HANDOFF_ACCEPTED])
def test_open_handoff_goes_to_both_sides_only(event):
    ctx = replace(WITH_TEAM, complex_case=True)
    assert who(event, ctx) == [(Role.TEAM, TEAM, Detail.FULL), (Role.HOSPITAL, HOSPITAL, Detail.FULL)]


@pytest.mark.parametrize("event", [E.HANDOFF_DECLINED, E.HANDOFF_EXPIRED])
def test_declined_handoff_asks_the_cpts_to_find_a_team(event):
    assert who(event, WITH_TEAM) == [
        (Role.TEAM, TEAM, Detail.FULL),
        (Role.HOSPITAL, HOSPITAL, Detail.FULL),
        (Role.CPTS, CPTS, Detail.MINIMISED),
    ]


@pytest.mark.parametrize("event", [E.HANDOFF_DECLINED, E.HANDOFF_EXPIRED])
def test_failed_handoff_of_complex_case_reaches_the_dac(event):
    assert (Role.DAC, DAC, Detail.FULL) in who(event, replace(WITH_TEAM, complex_case=True))


def test_failed_handoff_of_simple_case_with_open_dac_case_does_not_reach_the_dac():
    assert Role.DAC not in {r.role for r in route(E.HANDOFF_DECLINED, replace(WITH_TEAM, dac_case_open=True))}


def test_consent_opposition_keeps_failed_handoff_between_the_two_sides():
    ctx = replace(WITH_TEAM, complex_case=True, consent_opposed=True)
    assert who(E.HANDOFF_EXPIRED, ctx) == [
        (Role.TEAM, TEAM, Detail.FULL),
        (Role.HOSPITAL, HOSPITAL, Detail.FULL),
    ]


# follow-up


def test_due_followup_goes_to_the_team():
    assert who(E.FOLLOWUP_DUE, replace(WITH_TEAM, complex_case=True, escalation_level=1)) == [
        (Role.TEAM, TEAM, Detail.FULL)
    ]


def test_missed_followup_goes_to_team_first_then_escalates():
    complex_ctx = replace(WITH_TEAM, complex_case=True)
    assert who(E.FOLLOWUP_MISSED, complex_ctx) == [(Role.TEAM, TEAM, Detail.FULL)]
    assert who(E.FOLLOWUP_MISSED, replace(complex_ctx, escalation_level=1)) == [
        (Role.TEAM, TEAM, Detail.FULL),
        (Role.CPTS, CPTS, Detail.MINIMISED),
        (Role.DAC, DAC, Detail.FULL),
    ]


def test_escalated_missed_followup_of_simple_case_does_not_reach_the_dac():
    assert who(E.FOLLOWUP_MISSED, replace(WITH_TEAM, escalation_level=2)) == [
        (Role.TEAM, TEAM, Detail.FULL),
        (Role.CPTS, CPTS, Detail.MINIMISED),
    ]


# SNP


@pytest.mark.parametrize("event", [E.SNP_REQUESTED, E.SNP_OFFERED])
def test_snp_request_is_offered_to_the_own_team_and_counted_in_the_cpts_pool(event):
    assert who(event, WITH_TEAM) == [
        (Role.TEAM, TEAM, Detail.FULL),
        (Role.CPTS, CPTS, Detail.ORGANISATIONAL),
    ]


def test_snp_request_without_team_only_enters_the_cpts_pool():
    assert who(E.SNP_REQUESTED, WITHOUT_TEAM) == [(Role.CPTS, CPTS, Detail.ORGANISATIONAL)]


@pytest.mark.parametrize("event", [E.SNP_BOOKED, E.SNP_FULFILLED, E.SNP_NOSHOW])
def test_snp_outcomes_only_feed_the_cpts_counts(event):
    assert who(event, WITH_TEAM) == [(Role.CPTS, CPTS, Detail.ORGANISATIONAL)]


def test_expired_snp_request_goes_minimised_to_the_cpts_for_reorientation():
    assert who(E.SNP_EXPIRED, WITH_TEAM) == [(Role.CPTS, CPTS, Detail.MINIMISED)]


def test_consent_opposition_still_lets_snp_counts_reach_the_cpts():
    ctx = replace(WITH_TEAM, consent_opposed=True)
    assert who(E.SNP_REQUESTED, ctx) == [
        (Role.TEAM, TEAM, Detail.FULL),
        (Role.CPTS, CPTS, Detail.ORGANISATIONAL),
    ]
    assert who(E.SNP_EXPIRED, ctx) == []


# the table as a whole


def test_every_event_but_domain_events_and_receipts_has_a_rule():
    routed = {rule.event for rule in ROUTING_TABLE}
    assert routed == set(EventType) - UNROUTED_EVENTS
    assert {E.CARETEAM_CHANGED, E.CARETEAM_ASSIGNED, E.TERRITORY_CHANGED, E.NOTIFICATION_READ} == UNROUTED_EVENTS


@pytest.mark.parametrize("event", [E.CARETEAM_CHANGED, E.TERRITORY_CHANGED, E.NOTIFICATION_READ])
def test_domain_events_and_receipts_notify_nobody(event):
    everything = PatientContext(TEAM, HOSPITAL, CPTS, DAC, True, True, False, True, 3)
    assert route(event, everything) == []


@pytest.mark.parametrize("event", list(EventType))
def test_recipient_topics_match_their_roles(event):
    expected = {
        Role.TEAM: TOPIC_NOTIFY_TEAM,
        Role.HOSPITAL: TOPIC_NOTIFY_TEAM,
        Role.CPTS: TOPIC_NOTIFY_CPTS,
        Role.DAC: TOPIC_NOTIFY_DAC,
    }
    for ctx in (
        PatientContext(TEAM, HOSPITAL, CPTS, DAC, True, True, False, True, 1),
        PatientContext(None, HOSPITAL, CPTS, DAC, True, True, False, True, 1),
    ):
        for recipient in route(event, ctx):
            assert recipient.topic == expected[recipient.role]


def test_cpts_never_receives_full_detail():
    assert all(rule.detail is not Detail.FULL for rule in ROUTING_TABLE if rule.role is Role.CPTS)


def test_each_rule_appears_once():
    assert len({(r.event, r.role, r.detail, r.when.name) for r in ROUTING_TABLE}) == len(ROUTING_TABLE)


def test_unknown_organisation_yields_no_recipient():
    ctx = PatientContext(team_org_id=None, hospital_org_id=None, cpts_org_id=None, dac_org_id=None)
    assert route(E.HANDOFF_DECLINED, replace(ctx, complex_case=True)) == []
    assert who(E.HANDOFF_DECLINED, replace(ctx, cpts_org_id=CPTS)) == [(Role.CPTS, CPTS, Detail.MINIMISED)]


def test_recipient_reason_names_the_rule_for_audit():
    [recipient] = route(E.ADMISSION_RECORDED, WITHOUT_TEAM)
    assert recipient.reason == "admission.recorded/cpts/minimised/no_team"


def test_same_organisation_and_role_is_notified_once_at_the_highest_detail():
    table = (
        Rule(E.SNP_EXPIRED, Role.CPTS, Detail.ORGANISATIONAL),
        Rule(E.SNP_EXPIRED, Role.CPTS, Detail.MINIMISED),
        Rule(E.SNP_EXPIRED, Role.CPTS, Detail.ORGANISATIONAL, ALWAYS),
    )
    [recipient] = route(E.SNP_EXPIRED, WITH_TEAM, table)
    assert recipient.detail is Detail.MINIMISED
    # Consent is applied before dedup, so the counts survive when the minimised row is refused.
    [counts] = route(E.SNP_EXPIRED, replace(WITH_TEAM, consent_opposed=True), table)
    assert counts.detail is Detail.ORGANISATIONAL


def test_recipients_come_in_team_hospital_cpts_dac_order_whatever_the_table_order():
    table = tuple(reversed([r for r in ROUTING_TABLE if r.event is E.HANDOFF_DECLINED]))
    roles = [r.role for r in route(E.HANDOFF_DECLINED, replace(WITH_TEAM, complex_case=True), table)]
    assert roles == [Role.TEAM, Role.HOSPITAL, Role.CPTS, Role.DAC]


def test_rule_for_a_role_without_a_notify_topic_is_refused():
    with pytest.raises(ValueError):
        Rule(E.SNP_REQUESTED, Role.SAS, Detail.FULL)


def test_conditions_combine_and_keep_readable_names():
    either = any_of(HAS_TEAM, NO_TEAM)
    both = all_of(HAS_TEAM, NO_TEAM)
    assert either(WITH_TEAM) and either(WITHOUT_TEAM)
    assert not both(WITH_TEAM) and not both(WITHOUT_TEAM)
    assert either.name == "has_team_or_no_team" and both.name == "has_team_and_no_team"
    assert Condition("x", lambda ctx: True)(WITH_TEAM)


# complexity criteria


def test_seeded_complexity_criteria_make_a_case_complex():
    assert is_complex({"diabetes"})
    assert is_complex({"Readmission-30d "})
    assert is_complex({"hospital-request", "unrelated"})
    assert not is_complex(set())
    assert not is_complex({"sprained-ankle"})
    seeded = {"cancer", "frailty", "isolation", "precarity", "mental-health", "renal-failure"}
    assert seeded <= COMPLEXITY_CRITERIA


def test_complexity_criteria_are_configurable():
    assert is_complex({"sprained-ankle"}, frozenset({"sprained-ankle"}))
    assert not is_complex({"diabetes"}, frozenset({"cancer"}))


@pytest.mark.parametrize("event", [E.ADMISSION_RECORDED, E.DISCHARGE_RECORDED, E.HANDOFF_DECLINED])
def test_a_patient_known_only_by_a_local_identifier_reaches_nobody_beyond_the_care_team(event):
    verified = PatientContext(TEAM, HOSPITAL, CPTS, DAC, True, True, False, True, 3)
    local_only = PatientContext(TEAM, HOSPITAL, CPTS, DAC, True, True, False, True, 3, identity_verified=False)
    beyond = {Role.CPTS, Role.DAC}
    assert {r.role for r in route(event, verified)} & beyond
    assert not {r.role for r in route(event, local_only) if r.detail is not Detail.ORGANISATIONAL} & beyond
    assert {r.organisation_id for r in route(event, local_only)} >= {TEAM}
