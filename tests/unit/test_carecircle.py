"""The care-circle policy, rule by rule (shared/carecircle.py)."""

from __future__ import annotations

import pytest

from shared.carecircle import ALLOWED, CircleFacts, NotInCircle, Purpose, Share, allows, require, share
from shared.events import Role

FACTS = CircleFacts(
    team_org_id="msp-a",
    hospitals=frozenset({"chu-1"}),
    dac_cases=frozenset({"dac-1"}),
    cpts_org_id="cpts-1",
)


@pytest.mark.parametrize(
    ("role", "org", "expected"),
    [
        (Role.TEAM, "msp-a", Share.FULL),
        (Role.TEAM, "msp-b", Share.NONE),
        (Role.HOSPITAL, "chu-1", Share.OWN_ENCOUNTERS),
        (Role.HOSPITAL, "chu-2", Share.NONE),
        (Role.DAC, "dac-1", Share.CASE),
        (Role.DAC, "dac-2", Share.NONE),
        (Role.CPTS, "cpts-1", Share.MINIMISED),
        (Role.CPTS, "cpts-2", Share.NONE),
        (Role.SAS, "msp-a", Share.NONE),
        (Role.ADMIN, "msp-a", Share.NONE),
        # an id is only a member under the role it holds the link with
        (Role.HOSPITAL, "msp-a", Share.NONE),
        (Role.TEAM, "chu-1", Share.NONE),
    ],
)
def test_each_link_gives_its_share(role, org, expected):
    assert share(role, org, FACTS) is expected


def test_the_cpts_never_reads_clinical_data_nor_records_consent():
    for purpose in (Purpose.READ_CLINICAL, Purpose.RECORD_CONSENT, Purpose.REFER_TO_DAC, Purpose.SUBSCRIBE):
        assert not allows(Role.CPTS, "cpts-1", FACTS, purpose)
    assert allows(Role.CPTS, "cpts-1", FACTS, Purpose.READ_MINIMISED)


def test_only_the_current_team_answers_a_change_of_team():
    assert ALLOWED[Purpose.ANSWER_TEAM_CHANGE] == {Share.FULL}
    assert not allows(Role.HOSPITAL, "chu-1", FACTS, Purpose.ANSWER_TEAM_CHANGE)


def test_a_dac_with_a_case_neither_refers_nor_records_consent():
    assert not allows(Role.DAC, "dac-1", FACTS, Purpose.REFER_TO_DAC)
    assert not allows(Role.DAC, "dac-1", FACTS, Purpose.RECORD_CONSENT)
    assert allows(Role.DAC, "dac-1", FACTS, Purpose.READ_CLINICAL)


def test_outside_the_circle_and_unknown_read_the_same():
    with pytest.raises(NotInCircle) as foreign:
        require(Role.TEAM, "msp-b", FACTS, Purpose.READ_CLINICAL, "patient")
    with pytest.raises(NotInCircle) as unknown:
        require(Role.TEAM, "msp-b", CircleFacts(), Purpose.READ_CLINICAL, "patient")
    assert foreign.value.status_code == unknown.value.status_code == 404
    assert foreign.value.diagnostics == unknown.value.diagnostics == "no patient in your care circle"
    assert "msp-a" not in foreign.value.diagnostics


def test_every_purpose_has_a_rule():
    assert set(ALLOWED) == set(Purpose)
