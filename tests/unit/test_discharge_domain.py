"""Pure discharge rules: event dispatch, handoff state machine, complexity, readmission, routing context."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.discharge import commands, domain
from services.discharge.commands import command_for
from services.discharge.domain import (
    HandoffStatus,
    MirrorState,
    TerritoryState,
    complexity,
    criteria_from_condition,
    is_readmission,
    next_handoff_status,
    patient_context,
)
from shared import contracts
from shared.errors import Conflict, Forbidden, Unprocessable
from shared.events import EventType, Role
from shared.routing import Detail, Recipient, route

T0 = datetime(2024, 5, 9, 9, tzinfo=UTC)


def test_admission_events_are_refused_naming_the_admissions_endpoint():
    with pytest.raises(Unprocessable, match="/admissions/fhir/\\$process-message"):
        command_for(EventType.ADMISSION_RECORDED)


def test_discharge_events_map_to_their_commands():
    assert command_for(EventType.DISCHARGE_RECORDED) is commands.RecordDischarge
    assert command_for(EventType.DISCHARGE_CORRECTED) is commands.ReviseDischarge
    assert command_for(EventType.DISCHARGE_CANCELLED) is commands.CancelDischarge


@pytest.mark.parametrize(
    ("status", "action", "expected"),
    [
        ("requested", "accept", "accepted"),
        ("requested", "decline", "rejected"),
        ("requested", "cancel", "cancelled"),
        ("accepted", "cancel", "cancelled"),
        ("requested", "expire", HandoffStatus.EXPIRED),
    ],
)
def test_handoff_transitions(status, action, expected):
    assert next_handoff_status(status, action, "t") == expected


@pytest.mark.parametrize(
    ("status", "action"), [("accepted", "decline"), ("rejected", "accept"), ("accepted", "expire")]
)
def test_handoff_refuses_moves_from_a_settled_state(status, action):
    with pytest.raises(Conflict):
        next_handoff_status(status, action, "t")


def test_icd10_codes_map_to_criteria_by_prefix():
    icd = "http://hl7.org/fhir/sid/icd-10"
    assert criteria_from_condition([(icd, "E11.9"), (icd, "N18.4"), (icd, "J18")]) == {
        "diabetes",
        "renal-failure",
    }
    assert criteria_from_condition([(domain.COMPLEXITY_SYSTEM, "Precarity")]) == {"precarity"}


def test_readmission_counts_within_thirty_days_only():
    window = timedelta(days=30)
    assert is_readmission([T0], T0 + timedelta(days=29), window)
    assert not is_readmission([T0], T0 + timedelta(days=31), window)
    assert not is_readmission([T0 + timedelta(days=1)], T0, window)  # a later discharge is not "earlier"


def test_readmission_alone_makes_a_case_complex():
    met, complex_case = complexity([], True, domain.Policy().criteria)
    assert met == {"readmission-30d"} and complex_case
    assert complexity(["unknown-flag"], False, domain.Policy().criteria)[1] is False


def test_an_open_dac_case_points_at_the_dac_that_follows_the_patient():
    ctx = patient_context(
        mirror=MirrorState(team_org_id="t", team_active=True, dac_case_open=True, dac_org_id="dac-case"),
        territory=TerritoryState("cpts", "dac-territory"),
        hospital_org_id="h",
        complex_case=False,
    )
    assert ctx.dac_org_id == "dac-case" and ctx.team_org_id == "t"


def test_an_inactive_team_is_no_team():
    ctx = patient_context(
        mirror=MirrorState(team_org_id="t", team_active=False),
        territory=None,
        hospital_org_id="h",
        complex_case=False,
    )
    assert ctx.team_org_id is None


def test_follow_up_escalation_levels_follow_the_routing_table():
    base = dict(
        mirror=MirrorState(team_org_id="t", team_active=True),
        territory=TerritoryState("cpts", "dac"),
        hospital_org_id="h",
        complex_case=True,
    )
    level0 = route(EventType.FOLLOWUP_MISSED, patient_context(**base, escalation_level=0))
    level1 = route(EventType.FOLLOWUP_MISSED, patient_context(**base, escalation_level=1))
    assert [(r.role, r.organisation_id) for r in level0] == [(Role.TEAM, "t")]
    assert [(r.role, r.detail) for r in level1] == [
        (Role.TEAM, Detail.FULL),
        (Role.CPTS, Detail.MINIMISED),
        (Role.DAC, Detail.FULL),
    ]


def test_notification_ids_differ_by_event_and_repeat_for_the_same_inputs():
    r = Recipient(Role.TEAM, "t", Detail.FULL, "relais.notify.team", "x")
    a = contracts.notification_id("m", r, EventType.DISCHARGE_RECORDED)
    assert a == contracts.notification_id("m", r, EventType.DISCHARGE_RECORDED)
    assert a != contracts.notification_id("m", r, EventType.HANDOFF_PROPOSED)


def test_a_hospital_may_only_speak_for_its_own_finess():
    with pytest.raises(Forbidden):
        domain.check_hospital("750712184", "130005530")


def test_declining_needs_a_reason():
    with pytest.raises(Unprocessable):
        domain.check_decline_reason("  ")


@pytest.mark.parametrize(
    ("team", "status", "enrolled", "age", "expected"),
    [
        (None, "recorded", -1, 0, True),  # enrolled a second before the discharge, mirrored after it
        (None, "corrected", -1, 0, True),  # a revised discharge is still the team's
        (None, "recorded", 0, 0, True),  # the same instant
        (None, "recorded", 1, 0, False),  # enrolled after the discharge: the CPTS's orientation decides
        (None, "cancelled", -1, 0, False),
        ("msp-a", "recorded", -1, 0, False),  # it already reached a team
        (None, "recorded", -1, 73, False),  # past the handoff window (72 h)
        (None, "recorded", None, 0, False),  # a snapshot without a time says nothing about the order
    ],
)
def test_a_discharge_awaited_its_team_only_if_the_enrolment_preceded_it(team, status, enrolled, age, expected):
    recorded = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    enrolled_at = None if enrolled is None else recorded + timedelta(seconds=enrolled)
    assert domain.awaited_its_team(
        team_org_id=team, status=status, recorded_at=recorded, enrolled_at=enrolled_at,
        now=recorded + timedelta(hours=age), window=timedelta(hours=72),
    ) is expected
