"""Admissions handlers on a SQLite unit of work: routing, idempotence, corrections, the care-team registry."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError
from sqlmodel import SQLModel

from services.admissions import domain, handlers, intake
from services.admissions.adapters.orm import TABLES, CareTeamRow
from services.admissions.uow import AdmissionsUnitOfWork
from shared.auth import Principal
from shared.db.engine import make_engine, session_factory
from shared.db.tables import AuditEntry, OutboxMessage
from shared.errors import Conflict, NotFound
from shared.events import RELAIS_EVENT_SYSTEM, Role
from shared.fhir.intake import parse_message_bundle
from shared.identifiers import make_rpps
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
    return handlers.handle_admission_message(intake.admission_command(msg, caller), uow(), clock, SECRET)


def enrol(uow, clock, team=TEAM_X, **kwargs):
    cmd = intake.enrol_command(f.careteam_resource(**kwargs), team.organisation_id, clock())
    return handlers.enrol_patient(cmd, uow(), clock, SECRET)


def territory(uow, clock, cpts="cpts-14", dac="dac-75"):
    handlers.set_territory(domain.SetTerritory("75014", cpts, dac), uow(), clock)


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
    identity = domain.PatientIdentity(f.INS_NIR_TEST, f.DEFAULT_NIR)
    handlers.open_dac_case(domain.OpenDacCase("dac-75", identity), uow(), clock, SECRET)
    admit(uow, clock)
    assert sorted((t, k) for t, k, _ in notifications(sessions)) == [
        ("relais.notify.dac", "dac-75"),
        ("relais.notify.team", "msp-x"),
    ]


def test_opposition_keeps_the_cpts_away(uow, sessions, clock):
    territory(uow, clock)
    identity = domain.PatientIdentity(f.INS_NIR_TEST, f.DEFAULT_NIR)
    handlers.record_consent(domain.RecordConsent(identity, True, "msp-x"), uow(), clock, SECRET)
    admit(uow, clock)
    assert notifications(sessions) == []


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


def test_a_second_admission_of_the_same_encounter_is_a_conflict(uow, clock):
    admit(uow, clock, message("NDA-1"))
    with pytest.raises(Conflict):
        admit(uow, clock, message("NDA-1"))


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


def test_one_active_team_per_patient(uow, clock):
    enrol(uow, clock, TEAM_X)
    with pytest.raises(Conflict):
        enrol(uow, clock, TEAM_Y)


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
        f.change_referent_parameters(rpps=new_rpps), "msp-x", view.id, clock()
    )
    changed = handlers.change_referent(cmd, TEAM_X, uow(), clock).resource
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
        handlers.get_careteam(view.id, TEAM_Y, uow())
    with pytest.raises(NotFound):
        handlers.end_enrolment(domain.EndEnrolment("msp-y", view.id), TEAM_Y, uow(), clock)
    with sessions() as session:
        audits = session.execute(select(AuditEntry)).scalars().all()
    assert {(a.organisation_id, a.outcome) for a in audits} == {("msp-y", "denied")}
    assert handlers.list_careteams(TEAM_Y, uow()) == []


def test_ending_an_enrolment_frees_the_patient_for_another_team(uow, sessions, clock):
    view = enrol(uow, clock)
    ended = handlers.end_enrolment(domain.EndEnrolment("msp-x", view.id), TEAM_X, uow(), clock).resource
    assert ended["status"] == "inactive" and all("end" in p["period"] for p in ended["participant"])
    enrol(uow, clock, TEAM_Y)
    with sessions() as session:
        active = session.execute(
            text("select team_org_id from admissions_careteam where status='active'")
        ).all()
    assert active == [("msp-y",)]
