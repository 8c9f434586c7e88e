"""Pure rules of the admissions service: idempotence, corrections, message translation."""

from __future__ import annotations

import pytest

from services.admissions import commands, domain, intake
from shared.contracts import notification_id
from shared.errors import Conflict, Forbidden, Unprocessable
from shared.events import TOPIC_NOTIFY_CPTS, TOPIC_NOTIFY_TEAM, EventType, Role
from shared.fhir.intake import parse_message_bundle
from shared.identifiers import make_finess
from shared.routing import Detail, Recipient, recipients_from_json, recipients_to_json
from tests import factories as f

HOSPITAL = f.DEFAULT_FINESS


def parsed(bundle: dict):
    return parse_message_bundle(f.body(bundle), "application/fhir+json")


def test_fingerprint_ignores_key_order_but_not_content():
    a = {"id": "1", "entry": [{"x": 1, "y": 2}]}
    b = {"entry": [{"y": 2, "x": 1}], "id": "1"}
    assert domain.fingerprint(a) == domain.fingerprint(b)
    assert domain.fingerprint(a) != domain.fingerprint({"id": "1", "entry": [{"x": 1, "y": 3}]})


def test_replay_with_other_content_is_a_conflict():
    domain.check_replay("abc", "abc", "m1")
    with pytest.raises(Conflict):
        domain.check_replay("abc", "abd", "m1")


def test_notification_ids_are_deterministic_and_distinct_per_recipient():
    team = Recipient(Role.TEAM, "msp-x", Detail.FULL, TOPIC_NOTIFY_TEAM, "r")
    cpts = Recipient(Role.CPTS, "cpts-1", Detail.MINIMISED, TOPIC_NOTIFY_CPTS, "r")
    event = EventType.ADMISSION_RECORDED
    assert notification_id("m1", team, event) == notification_id("m1", team, event)
    assert notification_id("m1", team, event) != notification_id("m1", cpts, event)
    assert notification_id("m1", team, event) != notification_id("m2", team, event)


def test_a_correction_goes_to_the_original_recipients_and_nobody_else():
    original = [
        Recipient(
            Role.TEAM, "msp-x", Detail.FULL, TOPIC_NOTIFY_TEAM, "admission.recorded/team/full/has_team"
        ),
    ]
    stored = recipients_to_json(original)
    again = domain.correction_recipients(recipients_from_json(stored), EventType.ADMISSION_CANCELLED)
    assert [(r.role, r.organisation_id, r.detail, r.topic) for r in again] == [
        (Role.TEAM, "msp-x", Detail.FULL, TOPIC_NOTIFY_TEAM)
    ]


def test_a_correction_without_its_original_is_refused():
    with pytest.raises(Unprocessable):
        domain.check_correction_target(None, "sys|1", EventType.ADMISSION_CORRECTED)
    with pytest.raises(Conflict):
        domain.check_correction_target("cancelled", "sys|1", EventType.ADMISSION_CORRECTED)


def test_a_discharge_sent_to_admissions_names_the_discharge_endpoint():
    with pytest.raises(Unprocessable) as err:
        commands.command_for(EventType.DISCHARGE_RECORDED)
    assert "/discharge/fhir/$process-message" in err.value.diagnostics


def test_admission_codes_map_to_their_commands():
    assert commands.command_for(EventType.ADMISSION_RECORDED) is commands.RecordAdmission
    assert commands.command_for(EventType.ADMISSION_CORRECTED) is commands.ReviseAdmission
    assert commands.command_for(EventType.ADMISSION_CANCELLED) is commands.CancelAdmission


def test_an_admission_message_becomes_a_record_command_with_its_facts():
    command = intake.admission_command(parsed(f.admission_message(conditions=[("E11", "Diabète")])), HOSPITAL)
    assert isinstance(command, commands.RecordAdmission)
    facts = command.facts
    assert facts.hospital_org_id == HOSPITAL
    assert facts.patient.value == f.DEFAULT_NIR
    assert facts.postal_code == "75014"
    assert facts.encounter_class == "IMP"
    assert facts.referent is not None and facts.referent.phone
    assert facts.has_reason


def test_another_hospitals_finess_is_forbidden():
    with pytest.raises(Forbidden):
        intake.admission_command(parsed(f.admission_message()), make_finess("13000001"))


def test_encounter_without_subject_is_refused():
    bundle = f.admission_message()
    del bundle["entry"][1]["resource"]["subject"]
    with pytest.raises(Unprocessable):
        intake.admission_command(parsed(bundle), HOSPITAL)


def test_patient_without_identifier_is_refused():
    bundle = f.admission_message()
    del bundle["entry"][2]["resource"]["identifier"]
    with pytest.raises(Unprocessable):
        intake.admission_command(parsed(bundle), HOSPITAL)


def test_a_local_patient_identifier_is_accepted():
    bundle = f.admission_message()
    bundle["entry"][2]["resource"]["identifier"] = [
        {"system": "https://hopital.example.org/ipp", "value": "IPP-42"}
    ]
    command = intake.admission_command(parsed(bundle), HOSPITAL)
    assert command.facts.patient.value == "IPP-42"


def test_a_referent_without_phone_or_mssante_is_refused():
    bundle = f.admission_message()
    role = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "PractitionerRole")
    del role["telecom"]
    with pytest.raises(Unprocessable):
        intake.admission_command(parsed(bundle), HOSPITAL)


def test_a_finished_encounter_is_not_an_admission():
    with pytest.raises(Unprocessable):
        intake.admission_command(parsed(f.admission_message(encounter_status="finished")), HOSPITAL)


def test_an_enrolment_names_at_most_one_current_referent():
    now = None
    member = domain.Participant(domain.ROLE_MEMBER, "https://rpps.esante.gouv.fr", "1", None, now, None)
    domain.check_enrolment((member,))  # no referent: the managing organisation is the contact
    referent = domain.Participant(domain.ROLE_REFERENT, "https://rpps.esante.gouv.fr", "2", None, now, None)
    domain.check_enrolment((member, referent))
    with pytest.raises(Unprocessable):
        domain.check_enrolment((referent, referent))


# --- who may lift an opposition, what a DAC referral covers (issue 19, item 3) -----------------------------------


@pytest.mark.parametrize(
    ("caller", "role", "expected"),
    [
        ("h-1", Role.HOSPITAL, "recorder"),
        ("msp-then", Role.TEAM, "team-at-opposition"),
        ("msp-then", Role.HOSPITAL, None),  # the same id under another role is not the team of that time
        ("msp-now", Role.TEAM, None),  # a team that took over since
        ("h-2", Role.HOSPITAL, None),  # a hospital that admitted the patient since
    ],
)
def test_only_the_recorder_or_the_team_of_that_time_may_lift_an_opposition(caller, role, expected):
    assert domain.lifting_capacity("h-1", "msp-then", caller, role) == expected


def test_an_opposition_recorded_with_no_team_is_lifted_by_its_recorder_only():
    assert domain.lifting_capacity("msp-a", None, "msp-b", Role.TEAM) is None
    assert domain.lifting_capacity("msp-a", None, "msp-a", Role.TEAM) == "recorder"


def test_a_teams_referral_covers_the_patient_a_hospitals_its_stay():
    assert domain.case_covers("team", "msp-a", None, "h-2", "enc|9")
    assert domain.case_covers("hospital", "h-1", "enc|1", "h-1", "enc|1")
    assert not domain.case_covers("hospital", "h-1", "enc|1", "h-2", "enc|1")
    assert not domain.case_covers("hospital", "h-1", "enc|1", "h-1", "enc|2")
    assert not domain.case_covers("hospital", "h-1", "enc|1", None, None)  # a registry-wide view: not the stay
