"""Admissions handlers on a SQLite unit of work: routing, idempotence, corrections, the care-team registry."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError
from sqlmodel import SQLModel

from services.admissions import commands, domain, intake, views
from services.admissions.adapters.orm import TABLES, CareTeamRow
from services.admissions.deps import Deps
from services.admissions.messagebus import MessageBus
from services.admissions.uow import AdmissionsUnitOfWork
from shared.audit import RefusalRecorder, refusal_recorder
from shared.auth import Principal
from shared.db.engine import make_engine, session_factory
from shared.db.tables import AuditEntry, OutboxMessage
from shared.errors import Conflict, NotFound
from shared.events import RELAIS_EVENT_SYSTEM, Role
from shared.fhir.encounter import PatientIdentity
from shared.fhir.intake import parse_message_bundle
from shared.identifiers import make_rpps, patient_key
from shared.settings import AdmissionsSettings
from tests import factories as f

SECRET = "unit-test-secret"
HOSPITAL = f.DEFAULT_FINESS
TEAM_X = Principal("msp-x", Role.TEAM, "MSP X")
TEAM_Y = Principal("msp-y", Role.TEAM, "MSP Y")


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2024, 5, 2, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


@pytest.fixture
def sessions(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'admissions.sqlite'}")
    SQLModel.metadata.create_all(engine, tables=list(TABLES))
    yield session_factory(engine)
    engine.dispose()


@pytest.fixture
def uow(sessions):
    return lambda: AdmissionsUnitOfWork(sessions, "admissions")


@pytest.fixture
def clock():
    return Clock()


def refusals(uow) -> RefusalRecorder:
    return refusal_recorder(uow)


def bus_for(uow, clock) -> MessageBus:
    """The service's message bus over the test's unit of work and clock (what bootstrap.py builds)."""

    def pseudonymise(identity: PatientIdentity) -> str:
        return patient_key(identity.system, identity.value, SECRET)

    settings = AdmissionsSettings(environment="test", secret_key=SECRET + "-" * 20)
    return MessageBus(uow, Deps(clock, pseudonymise, refusals(uow), settings))


def outbox(sessions) -> list[tuple[str, str, dict]]:
    with sessions() as session:
        rows = session.execute(select(OutboxMessage).order_by(OutboxMessage.seq)).scalars()
        return [(r.topic, r.key, json.loads(r.value)) for r in rows]


def notifications(sessions) -> list[tuple[str, str, dict]]:
    return [(t, k, v) for t, k, v in outbox(sessions) if t.startswith("relais.notify.")]


def message(nda: str, **kwargs) -> dict:
    """An admission message for encounter `nda` (the factory's NDA is the same for every message)."""
    bundle = f.admission_message(**kwargs)
    bundle["entry"][1]["resource"]["identifier"][0]["value"] = nda
    return bundle


def admit(uow, clock, bundle=None, caller=HOSPITAL):
    bundle = bundle or f.admission_message()
    msg = parse_message_bundle(f.body(bundle), "application/fhir+json")
    return bus_for(uow, clock).handle(intake.admission_command(msg, caller))


def enrol(uow, clock, team=TEAM_X, **kwargs):
    cmd = intake.enrol_command(f.careteam_resource(**kwargs), team.organisation_id, clock())
    return bus_for(uow, clock).handle(cmd)


def territory(uow, clock, cpts="cpts-14", dac="dac-75"):
    bus_for(uow, clock).handle(commands.SetTerritory("75014", cpts, dac))


def test_admission_of_an_enrolled_patient_reaches_only_its_team_in_full(uow, sessions, clock):
    territory(uow, clock)
    enrol(uow, clock)
    response = admit(uow, clock, f.admission_message(conditions=[("E11", "Diabète")]))
    assert response["entry"][0]["resource"]["response"]["code"] == "ok"
    sent = notifications(sessions)
    assert [(t, k) for t, k, _ in sent] == [("relais.notify.team", "msp-x")]
    data = sent[0][2]["data"]
    assert data["detail"] == "full" and data["payload"]["resourceType"] == "Bundle"
    assert "E11" in json.dumps(data["payload"])
    domain_events = [v for t, _, v in outbox(sessions) if t == "relais.admissions"]
    assert len(domain_events) == 1 and domain_events[0]["key"] == data["patient_key"]


def test_without_a_team_only_the_cpts_gets_a_minimised_form(uow, sessions, clock):
    territory(uow, clock)
    admit(uow, clock, f.admission_message(conditions=[("E11", "Diabète")]))
    sent = notifications(sessions)
    assert [(t, k) for t, k, _ in sent] == [("relais.notify.cpts", "cpts-14")]
    raw = json.dumps(sent[0][2])
    for secret in ("E11", "Diabète", "MARTIN", "Jeanne", f.DEFAULT_NIR, "1955-03-14"):
        assert secret not in raw
    assert sent[0][2]["data"]["payload"]["age_band"] == "60-74"


def test_an_open_dac_case_brings_the_dac_in(uow, sessions, clock):
    territory(uow, clock)
    enrol(uow, clock)
    admit(uow, clock, message("NDA-0"))  # teaches the postal code: the referral goes to the territory's DAC
    identity = domain.PatientIdentity(f.INS_NIR_TEST, f.DEFAULT_NIR)
    bus_for(uow, clock).handle(commands.ReferToDac("msp-x", Role.TEAM, identity, "dac-75"))
    before = len(notifications(sessions))
    admit(uow, clock, message("NDA-1"))
    assert sorted((t, k) for t, k, _ in notifications(sessions)[before:]) == [
        ("relais.notify.dac", "dac-75"),
        ("relais.notify.team", "msp-x"),
    ]


def test_opposition_keeps_the_cpts_away(uow, sessions, clock):
    territory(uow, clock)
    identity = domain.PatientIdentity(f.INS_NIR_TEST, f.DEFAULT_NIR)
    admit(uow, clock, message("NDA-1"))
    before = len(notifications(sessions))
    bus_for(uow, clock).handle(commands.RecordConsent(identity, True, HOSPITAL, Role.HOSPITAL))
    admit(uow, clock, message("NDA-2"))
    assert notifications(sessions)[before:] == []


def test_the_same_message_twice_answers_the_same_and_publishes_nothing_new(uow, sessions, clock):
    territory(uow, clock)
    bundle = f.admission_message()
    first = admit(uow, clock, bundle)
    count = len(outbox(sessions))
    assert admit(uow, clock, bundle) == first
    assert len(outbox(sessions)) == count


def test_other_content_under_a_used_message_id_is_a_conflict(uow, sessions, clock):
    bundle = f.admission_message()
    admit(uow, clock, bundle)
    other = message("NDA-OTHER", message_id=bundle["id"])
    with pytest.raises(Conflict):
        admit(uow, clock, other)


def test_the_same_admission_again_under_another_id_is_a_copy_not_a_conflict(uow, sessions, clock):
    territory(uow, clock)
    admit(uow, clock, message("NDA-1"))
    told = len(notifications(sessions))
    answer = admit(uow, clock, message("NDA-1"))  # e.g. the copy an integration engine relays
    outcome = next(e["resource"] for e in answer["entry"] if e["resource"]["resourceType"] == "OperationOutcome")
    assert outcome["issue"][0]["code"] == "duplicate"
    assert len(notifications(sessions)) == told  # nobody is told twice


def test_a_second_admission_of_the_same_encounter_with_other_facts_is_a_conflict(uow, clock):
    admit(uow, clock, message("NDA-1"))
    with pytest.raises(Conflict):
        admit(uow, clock, message("NDA-1", encounter_class="EMER"))


def test_a_correction_reaches_the_original_recipients_even_after_the_patient_enrols(uow, sessions, clock):
    territory(uow, clock)
    admit(uow, clock, message("NDA-7"))
    enrol(uow, clock)  # routing would now pick the team; the correction must not
    before = len(notifications(sessions))
    admit(uow, clock, message("NDA-7", event=(RELAIS_EVENT_SYSTEM, "revise-admit")))
    admit(
        uow,
        clock,
        message("NDA-7", event=(RELAIS_EVENT_SYSTEM, "cancel-admit"), encounter_status="entered-in-error"),
    )
    later = notifications(sessions)[before:]
    assert [(t, k, v["type"]) for t, k, v in later] == [
        ("relais.notify.cpts", "cpts-14", "admission.corrected"),
        ("relais.notify.cpts", "cpts-14", "admission.cancelled"),
    ]


def test_a_correction_of_an_unknown_admission_stores_and_publishes_nothing(uow, sessions, clock):
    with pytest.raises(Exception) as err:
        admit(uow, clock, f.admission_message(event=(RELAIS_EVENT_SYSTEM, "revise-admit")))
    assert getattr(err.value, "status_code", None) == 422
    assert outbox(sessions) == []


def active_teams(sessions) -> list[tuple[str, str]]:
    with sessions() as session:
        rows = session.execute(text("select team_org_id, status from admissions_careteam order by started_at, id"))
        return [tuple(r) for r in rows]


def test_enrolling_a_patient_of_another_team_is_a_request_not_a_takeover(uow, sessions, clock):
    first = enrol(uow, clock, TEAM_X)
    again = enrol(uow, clock, TEAM_X)
    asked = enrol(uow, clock, TEAM_Y)
    assert again == first  # enrolling one's own patient again changes nothing
    assert sorted(active_teams(sessions)) == [("msp-x", "active"), ("msp-y", "proposed")]
    assert enrol(uow, clock, TEAM_Y) == asked  # the same request again
    listing = views.team_changes(uow(), "msp-x")
    [change] = listing["to_answer"]
    assert change["requested_by"] == "msp-y" and change["careteam"] == first.careteam_id
    [mine] = views.team_changes(uow(), "msp-y")["requested"]
    assert mine["careteam"] == asked.careteam_id and "msp-x" not in json.dumps(mine)


def test_the_current_team_accepts_a_change_of_team(uow, sessions, clock):
    enrol(uow, clock, TEAM_X)
    asked = enrol(uow, clock, TEAM_Y)
    [change] = views.team_changes(uow(), "msp-x")["to_answer"]
    with pytest.raises(NotFound):  # the requester cannot answer its own request
        bus_for(uow, clock).handle(commands.AnswerTeamChange("msp-y", change["id"], accept=True))
    answered = bus_for(uow, clock).handle(commands.AnswerTeamChange("msp-x", change["id"], accept=True))
    assert answered["status"] == "accepted"
    assert sorted(active_teams(sessions)) == [("msp-x", "inactive"), ("msp-y", "active")]
    last = careteam_events(sessions)[-1]
    assert (last["change"], last["team_org_id"], last["careteam_id"]) == ("team-changed", "msp-y", asked.careteam_id)


def test_the_current_team_declines_a_change_of_team(uow, sessions, clock):
    enrol(uow, clock, TEAM_X)
    enrol(uow, clock, TEAM_Y)
    [change] = views.team_changes(uow(), "msp-x")["to_answer"]
    bus_for(uow, clock).handle(commands.AnswerTeamChange("msp-x", change["id"], accept=False))
    assert sorted(active_teams(sessions)) == [("msp-x", "active"), ("msp-y", "inactive")]
    assert views.team_changes(uow(), "msp-y")["requested"][0]["status"] == "declined"
    assert [e["change"] for e in careteam_events(sessions)] == ["enrolled"]


def test_an_unanswered_change_of_team_expires_to_the_new_team(uow, sessions, clock):
    enrol(uow, clock, TEAM_X)
    enrol(uow, clock, TEAM_Y)
    assert bus_for(uow, clock).handle(commands.ExpireTeamChanges()) == 0
    clock.now += timedelta(hours=AdmissionsSettings().team_change_expiry_hours)
    assert bus_for(uow, clock).handle(commands.ExpireTeamChanges()) == 1
    assert sorted(active_teams(sessions)) == [("msp-x", "inactive"), ("msp-y", "active")]
    assert views.team_changes(uow(), "msp-y")["requested"][0]["status"] == "expired"


def test_a_team_that_lets_go_hands_over_to_the_waiting_request(uow, sessions, clock):
    first = enrol(uow, clock, TEAM_X)
    enrol(uow, clock, TEAM_Y)
    bus_for(uow, clock).handle(commands.EndEnrolment("msp-x", first.careteam_id))
    assert sorted(active_teams(sessions)) == [("msp-x", "inactive"), ("msp-y", "active")]


def test_the_database_refuses_a_second_active_team(sessions):
    now = datetime.now(UTC)
    with sessions() as session:
        for team in ("a", "b"):
            session.add(
                CareTeamRow(
                    id=team,
                    patient_key="k",
                    subject_system="s",
                    subject_value="v",
                    team_org_id=team,
                    status="active",
                    started_at=now,
                )
            )
        with pytest.raises(IntegrityError):
            session.commit()


def test_changing_the_referent_ends_one_period_and_starts_another(uow, sessions, clock):
    view = enrol(uow, clock)
    new_rpps = make_rpps("1000999999")
    cmd = intake.change_referent_command(
        f.change_referent_parameters(rpps=new_rpps), "msp-x", view.careteam_id, clock()
    )
    changed = bus_for(uow, clock).handle(cmd).resource
    referents = [p for p in changed["participant"] if p["role"][0]["coding"][0]["code"] == "referent"]
    assert len(referents) == 2
    old, new = referents
    assert old["period"]["end"] and "end" not in new["period"]
    assert new["member"]["identifier"]["value"] == new_rpps
    events = [v["data"]["change"] for t, _, v in outbox(sessions) if t == "relais.careteam"]
    assert events == ["enrolled", "referent-changed"]


def test_another_team_sees_no_care_team_and_the_attempt_is_audited(uow, sessions, clock):
    view = enrol(uow, clock)
    with pytest.raises(NotFound):
        views.read_careteam(uow(), refusals(uow), TEAM_Y.organisation_id, view.careteam_id)
    with pytest.raises(NotFound):
        bus_for(uow, clock).handle(commands.EndEnrolment("msp-y", view.careteam_id))
    with sessions() as session:
        audits = session.execute(select(AuditEntry)).scalars().all()
    assert {(a.organisation_id, a.outcome) for a in audits} == {("msp-y", "denied")}
    assert views.list_careteams(uow(), TEAM_Y.organisation_id) == []


def test_ending_an_enrolment_frees_the_patient_for_another_team(uow, sessions, clock):
    view = enrol(uow, clock)
    ended = bus_for(uow, clock).handle(commands.EndEnrolment("msp-x", view.careteam_id)).resource
    assert ended["status"] == "inactive" and all("end" in p["period"] for p in ended["participant"])
    enrol(uow, clock, TEAM_Y)
    with sessions() as session:
        active = session.execute(
            text("select team_org_id from admissions_careteam where status='active'")
        ).all()
    assert active == [("msp-y",)]


# --- care-team mirror (docs/events.md "Care-team mirror"): what relais.careteam carries -------------------

CONTEXT_KEYS = {
    "patient_key", "careteam_id", "team_org_id", "status", "referent",
    "consent_opposed", "dac_case_open", "dac_org_id", "postal_code",
}
IDENTITY = domain.PatientIdentity(f.INS_NIR_TEST, f.DEFAULT_NIR)
KEY = patient_key(f.INS_NIR_TEST, f.DEFAULT_NIR, SECRET)


def careteam_events(sessions) -> list[dict]:
    """The careteam.changed rows: each keyed by the patient and carrying the whole context."""
    events = []
    for topic, key, envelope in outbox(sessions):
        if topic == "relais.careteam" and envelope["type"] == "careteam.changed":
            data = envelope["data"]
            assert key == data["patient_key"] and data.keys() >= CONTEXT_KEYS
            events.append(data)
    return events


def context(data: dict) -> dict:
    return {k: data[k] for k in CONTEXT_KEYS}


def enrolment_with_contact(postal_code: str | None = "88410") -> dict:
    """A CareTeam naming its referent's contact (contained PractitionerRole) and the patient's address."""
    resource = f.careteam_resource()
    resource["contained"] = [
        {
            "resourceType": "PractitionerRole",
            "id": "ref",
            "telecom": [
                {"system": "phone", "value": "0329000000"},
                {"system": "email", "value": "claire.petit@msp.mssante.fr"},
            ],
        }
    ]
    resource["participant"][0]["member"]["reference"] = "#ref"
    if postal_code:
        resource["contained"].append(
            {"resourceType": "Patient", "id": "pat", "address": [{"postalCode": postal_code}]}
        )
        resource["subject"]["reference"] = "#pat"
    return resource


def enrol_with_contact(uow, clock, postal_code: str | None = "88410"):
    cmd = intake.enrol_command(enrolment_with_contact(postal_code), "msp-x", clock())
    return bus_for(uow, clock).handle(cmd)


def test_enrolment_publishes_the_whole_context(uow, sessions, clock):
    view = enrol_with_contact(uow, clock)
    [event] = careteam_events(sessions)
    assert event["change"] == "enrolled"
    assert context(event) == {
        "patient_key": KEY,
        "careteam_id": view.careteam_id,
        "team_org_id": "msp-x",
        "status": "active",
        "referent": {
            "rpps": f.DEFAULT_RPPS,
            "name": "Dr Claire PETIT",
            "telecom": [
                {"system": "phone", "value": "0329000000"},
                {"system": "email", "value": "claire.petit@msp.mssante.fr"},
            ],
        },
        "consent_opposed": False,
        "dac_case_open": False,
        "dac_org_id": None,
        "postal_code": "88410",
    }
    assert "team" not in event  # the old name is gone: team_org_id


def test_end_of_enrolment_publishes_an_inactive_context_without_team_or_referent(uow, sessions, clock):
    view = enrol_with_contact(uow, clock)
    bus_for(uow, clock).handle(commands.EndEnrolment("msp-x", view.careteam_id))
    ended = careteam_events(sessions)[-1]
    assert ended["change"] == "ended"
    assert context(ended) == {
        "patient_key": KEY,
        "careteam_id": view.careteam_id,
        "team_org_id": None,
        "status": "inactive",
        "referent": None,
        "consent_opposed": False,
        "dac_case_open": False,
        "dac_org_id": None,
        "postal_code": "88410",
    }


def test_referent_change_publishes_the_new_referent_and_keeps_the_rest(uow, sessions, clock):
    view = enrol_with_contact(uow, clock)
    bus_for(uow, clock).handle(commands.RecordConsent(IDENTITY, True, "msp-x"))
    new_rpps = make_rpps("1000999999")
    params = f.change_referent_parameters(rpps=new_rpps)
    phone = {"system": "phone", "value": "0329111111"}
    params["parameter"].append({"name": "telecom", "valueContactPoint": phone})
    cmd = intake.change_referent_command(params, "msp-x", view.careteam_id, clock())
    bus_for(uow, clock).handle(cmd)
    changed = careteam_events(sessions)[-1]
    assert changed["change"] == "referent-changed"
    assert changed["referent"] == {
        "rpps": new_rpps,
        "name": "Dr Nadia BENALI",
        "telecom": [{"system": "phone", "value": "0329111111"}],
    }
    assert (changed["team_org_id"], changed["status"], changed["careteam_id"]) == ("msp-x", "active", view.careteam_id)
    assert changed["consent_opposed"] is True and changed["postal_code"] == "88410"


def test_recording_consent_publishes_the_context(uow, sessions, clock):
    enrol_with_contact(uow, clock)
    bus_for(uow, clock).handle(commands.RecordConsent(IDENTITY, True, "msp-x"))
    opposed = careteam_events(sessions)[-1]
    assert opposed["change"] == "consent-recorded"
    assert opposed["consent_opposed"] is True
    assert (opposed["team_org_id"], opposed["referent"]["rpps"]) == ("msp-x", f.DEFAULT_RPPS)
    bus_for(uow, clock).handle(commands.RecordConsent(IDENTITY, False, "msp-x"))
    assert careteam_events(sessions)[-1]["consent_opposed"] is False


def test_consent_of_a_patient_without_a_team_publishes_a_teamless_context(uow, sessions, clock):
    admit(uow, clock, message("NDA-1", postal_code="88140"))
    bus_for(uow, clock).handle(commands.RecordConsent(IDENTITY, True, HOSPITAL, Role.HOSPITAL))
    event = careteam_events(sessions)[-1]
    assert context(event) == {
        "patient_key": KEY,
        "careteam_id": None,
        "team_org_id": None,
        "status": "inactive",
        "referent": None,
        "consent_opposed": True,
        "dac_case_open": False,
        "dac_org_id": None,
        "postal_code": "88140",
    }


def test_opening_and_closing_a_dac_case_publish_the_context(uow, sessions, clock):
    enrol_with_contact(uow, clock)
    bus_for(uow, clock).handle(commands.SetTerritory("88410", None, "dac-88"))
    case = bus_for(uow, clock).handle(commands.ReferToDac("msp-x", Role.TEAM, IDENTITY, "dac-88"))
    opened = careteam_events(sessions)[-1]
    assert opened["change"] == "dac-case-opened"
    assert (opened["dac_case_open"], opened["dac_org_id"]) == (True, "dac-88")
    assert (opened["team_org_id"], opened["postal_code"]) == ("msp-x", "88410")
    bus_for(uow, clock).handle(commands.CloseDacCase("dac-88", case["id"]))
    closed = careteam_events(sessions)[-1]
    assert closed["change"] == "dac-case-closed"
    assert (closed["dac_case_open"], closed["dac_org_id"]) == (False, None)
    count = len(careteam_events(sessions))
    bus_for(uow, clock).handle(commands.CloseDacCase("dac-88", case["id"]))
    assert len(careteam_events(sessions)) == count  # closing twice changes nothing, publishes nothing


def test_a_refused_dac_case_publishes_nothing(uow, sessions, clock):
    enrol_with_contact(uow, clock)
    bus_for(uow, clock).handle(commands.SetTerritory("88410", None, "dac-88"))
    refer = commands.ReferToDac("msp-x", Role.TEAM, IDENTITY, "dac-88")
    bus_for(uow, clock).handle(refer)
    with pytest.raises(Conflict):
        bus_for(uow, clock).handle(refer)
    assert [e["change"] for e in careteam_events(sessions)] == ["enrolled", "dac-case-opened"]


def test_an_admission_teaches_the_postal_code_once_and_later_events_carry_it(uow, sessions, clock):
    enrol_with_contact(uow, clock, postal_code=None)
    assert careteam_events(sessions)[-1]["postal_code"] is None
    admit(uow, clock, message("NDA-1", postal_code="88140"))
    learnt = careteam_events(sessions)[-1]
    assert (learnt["change"], learnt["postal_code"]) == ("postal-code", "88140")
    assert learnt["team_org_id"] == "msp-x"
    admit(uow, clock, message("NDA-2", postal_code="88140"))
    assert len(careteam_events(sessions)) == 2  # same postal code: the context did not change
    bus_for(uow, clock).handle(commands.RecordConsent(IDENTITY, True, "msp-x"))
    assert careteam_events(sessions)[-1]["postal_code"] == "88140"


def test_a_replayed_admission_publishes_no_second_context(uow, sessions, clock):
    bundle = message("NDA-1", postal_code="88140")
    admit(uow, clock, bundle)
    admit(uow, clock, bundle)
    assert [e["change"] for e in careteam_events(sessions)] == ["postal-code"]


def test_setting_a_territory_publishes_territory_changed_keyed_by_postal_code(uow, sessions, clock):
    bus_for(uow, clock).handle(commands.SetTerritory("88410", "cpts-vosges", "dac-88"))
    rows = [(t, k, v) for t, k, v in outbox(sessions) if v["type"] == "territory.changed"]
    [(topic, key, envelope)] = rows
    assert (topic, key) == ("relais.careteam", "88410")
    data = envelope["data"]
    assert {k: data[k] for k in ("postal_code", "cpts_org_id", "dac_org_id")} == {
        "postal_code": "88410",
        "cpts_org_id": "cpts-vosges",
        "dac_org_id": "dac-88",
    }
    bus_for(uow, clock).handle(commands.SetTerritory("88410", "cpts-vosges", None))
    assert [v["data"]["dac_org_id"] for _, _, v in outbox(sessions) if v["type"] == "territory.changed"] == [
        "dac-88",
        None,
    ]
