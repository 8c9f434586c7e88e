"""Orientation and worklists on SQLite: the CPTS orients a patient without a team, the team decides and accepts,
the registry is asked to record it; Task search scoped to the caller; the reminder before a follow-up is due."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from services.discharge.bootstrap import bootstrap
from shared.auth import Directory
from shared.bus.embedded import EmbeddedBus
from shared.bus.envelope import Envelope
from shared.db.tables import AuditEntry
from shared.events import TOPIC_REGISTRY_UPDATES, Role
from shared.settings import DischargeSettings
from tests import factories as f
from tests.unit import test_discharge_handlers as handlers_suite
from tests.unit.test_discharge_handlers import CPTS, DISCHARGED_AT, FHIR, FINESS, OTHER_TEAM, TEAM, FakeClock, Harness

harness = handlers_suite.harness
OTHER_CPTS = "cpts-vosges-est"
ORIENTATION = "https://relais.example.org/fhir/CodeSystem/task-code|orientation"
PLAN = (("gp-visit", "Consultation du médecin traitant sous 7 jours", 7 * 24.0),)


def _search(h: Harness, org: str, **params: str):
    return h.client.get("/discharge/fhir/Task", params=params, headers=h.auth(org))


def _tasks(h: Harness, org: str, **params: str) -> list[dict]:
    response = _search(h, org, **params)
    assert response.status_code == 200, response.text
    bundle = response.json()
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset"
    return [e["resource"] for e in bundle.get("entry", [])]


def _assign(h: Harness, task_id: str, team: object, org: str = CPTS, kind: str = "valueString"):
    body = {"resourceType": "Parameters", "parameter": [{"name": "team", kind: team}]}
    return h.client.post(
        f"/discharge/fhir/Task/{task_id}/$assign", content=json.dumps(body), headers={**FHIR, **h.auth(org)}
    )


def _discharge_without_team(h: Harness, **kwargs) -> dict:
    h.territory()
    response = h.post_message(f.full_discharge_message(plan=PLAN, **kwargs))
    assert response.status_code == 200, response.text
    [orientation] = _tasks(h, CPTS, code=ORIENTATION)
    return orientation


def _registry_updates(h: Harness) -> list[dict]:
    return [m for m in h.outbox(TOPIC_REGISTRY_UPDATES)]


def test_a_patient_discharged_without_a_team_gets_an_orientation_task_with_minimised_facts_only(harness):
    orientation = _discharge_without_team(harness)
    assert orientation["status"] == "requested"
    assert orientation["owner"]["identifier"]["value"] == CPTS
    assert orientation["statusReason"]["coding"][0]["code"] == "no-team"
    text = json.dumps(orientation)
    for secret in (f.DEFAULT_NIR, "NDA", "Martin", "1975-"):  # INS, encounter number, name, birth date
        assert secret not in text
    inputs = {i["type"]["text"]: i for i in orientation["input"]}
    assert {"age_band", "commune", "followup"} <= set(inputs)
    assert harness.recipients("orientation.requested") == {(CPTS, "cpts", "minimised")}


def test_the_cpts_assigns_the_team_decides_on_minimised_facts_then_sees_the_full_discharge(harness):
    orientation = _discharge_without_team(harness)
    assigned = _assign(harness, orientation["id"], TEAM)
    assert assigned.status_code == 200, assigned.text
    assert assigned.json()["status"] == "in-progress"
    [handoff] = _tasks(harness, TEAM, code="handoff", status="requested")
    assert f.DEFAULT_NIR not in json.dumps(handoff)  # not yet in the care team
    inputs = {i["type"]["text"] for i in handoff["input"]}
    assert {"age_band", "commune", "followup", "hospital-referent-phone"} <= inputs
    assert harness.recipients("orientation.assigned") == {(TEAM, "team", "minimised")}

    accepted = harness.client.post(f"/discharge/fhir/Task/{handoff['id']}/$accept", headers=harness.auth(TEAM))
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["for"]["identifier"]["value"] == f.DEFAULT_NIR  # full, now it is the treating team
    assert harness.recipients("orientation.accepted") == {
        (TEAM, "team", "full"),
        (FINESS, "hospital", "full"),
        (CPTS, "cpts", "minimised"),
    }
    [update] = _registry_updates(harness)
    assert update["type"] == "careteam.assigned"
    assert update["data"]["team_org_id"] == TEAM and update["key"] == harness.key()
    [done] = _tasks(harness, CPTS, code=ORIENTATION)
    assert done["status"] == "completed"
    # the follow-up plan is the new team's
    followups = _tasks(harness, TEAM, code="gp-visit")
    assert followups and all(t["owner"]["identifier"]["value"] == TEAM for t in followups)


# --- a discharge that arrives before the team's enrolment has reached the discharge service ----------------------


def _enrolment(h: Harness, *, at, team: str = TEAM, nir: str = f.DEFAULT_NIR) -> Envelope:
    """The care-team change admissions published at `at` (it travels on the bus, so it can arrive late)."""
    key = h.key(nir)
    data = {"patient_key": key, "careteam_id": "ct-1", "team_org_id": team, "status": "active",
            "referent": {"rpps": "10001234565", "name": "Dr Référent"}, "postal_code": "75014"}
    return Envelope(type="careteam.changed", key=key, data=data, source="admissions", time=at.isoformat())


def test_a_discharge_recorded_while_the_enrolment_was_on_its_way_reaches_the_team_when_it_arrives(harness):
    enrolled_at = harness.clock.now - timedelta(seconds=2)  # before the discharge, mirrored after it
    orientation = _discharge_without_team(harness)
    assert harness.recipients("discharge.recorded") == {(CPTS, "cpts", "minimised")}

    late = _enrolment(harness, at=enrolled_at)
    harness.deliver(late)
    harness.deliver(late)  # a redelivery changes nothing

    assert harness.recipients("discharge.recorded") == {(CPTS, "cpts", "minimised"), (TEAM, "team", "full")}
    assert len(harness.notifications("discharge.recorded")) == 2  # the CPTS is not told twice
    assert harness.recipients("handoff.proposed") == {(TEAM, "team", "full"), (FINESS, "hospital", "full")}
    [handoff] = _tasks(harness, TEAM, code="handoff", status="requested")
    accepted = harness.client.post(f"/discharge/fhir/Task/{handoff['id']}/$accept", headers=harness.auth(TEAM))
    assert accepted.status_code == 200, accepted.text
    followups = _tasks(harness, TEAM, code="gp-visit")
    assert followups and all(t["owner"]["identifier"]["value"] == TEAM for t in followups)
    [cancelled] = _tasks(harness, CPTS, code=ORIENTATION)
    assert (cancelled["id"], cancelled["status"]) == (orientation["id"], "cancelled")
    assert _assign(harness, orientation["id"], OTHER_TEAM).status_code == 409


@pytest.mark.parametrize(
    ("when", "later", "nir"),
    [
        (timedelta(seconds=2), timedelta(0), f.DEFAULT_NIR),  # enrolled after the discharge: the CPTS orients
        (-timedelta(seconds=2), timedelta(days=30), f.DEFAULT_NIR),  # arrives after the handoff could be answered
        (-timedelta(seconds=2), timedelta(0), "279035121518989"),  # another patient's enrolment
    ],
    ids=["enrolled after the discharge", "arrives too late", "another patient"],
)
def test_an_enrolment_that_did_not_precede_the_discharge_leaves_it_to_the_orientation(harness, when, later, nir):
    at = harness.clock.now + when
    orientation = _discharge_without_team(harness)
    harness.clock.advance(seconds=later.total_seconds())
    harness.deliver(_enrolment(harness, at=at, nir=nir))
    assert harness.recipients("discharge.recorded") == {(CPTS, "cpts", "minimised")}
    assert harness.notifications("handoff.proposed") == []
    [still] = _tasks(harness, CPTS, code=ORIENTATION)
    assert (still["id"], still["status"]) == (orientation["id"], orientation["status"])


def test_a_declined_proposal_returns_the_orientation_to_the_cpts_with_the_reason(harness):
    orientation = _discharge_without_team(harness)
    _assign(harness, orientation["id"], TEAM)
    [handoff] = _tasks(harness, TEAM, code="handoff")
    body = json.dumps({"resourceType": "Parameters", "parameter": [{"name": "reason", "valueString": "complet"}]})
    declined = harness.client.post(
        f"/discharge/fhir/Task/{handoff['id']}/$decline", content=body, headers={**FHIR, **harness.auth(TEAM)}
    )
    assert declined.status_code == 200, declined.text
    [back] = _tasks(harness, CPTS, code=ORIENTATION)
    assert back["status"] == "requested" and back["statusReason"]["coding"][0]["code"] == "handoff-declined"
    assert "complet" not in json.dumps(back)  # the team's free text stays in the care team
    assert (CPTS, "cpts", "minimised") in harness.recipients("orientation.returned")
    # the CPTS proposes another team
    again = _assign(harness, orientation["id"], OTHER_TEAM)
    assert again.status_code == 200 and again.json()["status"] == "in-progress"
    assert _registry_updates(harness) == []


def test_an_unanswered_proposal_expires_back_to_the_cpts_once(harness):
    orientation = _discharge_without_team(harness)
    _assign(harness, orientation["id"], TEAM)
    harness.clock.advance(hours=49)
    assert harness.fire() >= 1
    assert harness.fire() == 0
    [back] = _tasks(harness, CPTS, code=ORIENTATION)
    assert back["statusReason"]["coding"][0]["code"] == "handoff-expired"
    assert len(harness.notifications("orientation.returned")) == len(harness.recipients("orientation.returned"))


def test_a_declined_handoff_of_the_treating_team_opens_an_orientation(harness):
    harness.territory()
    harness.careteam()
    response = harness.post_message(f.full_discharge_message(plan=PLAN))
    handoff_id = handlers_suite.task_ids(response.json())["handoff"][0]
    body = json.dumps({"resourceType": "Parameters", "parameter": [{"name": "reason", "valueString": "départ"}]})
    harness.client.post(
        f"/discharge/fhir/Task/{handoff_id}/$decline", content=body, headers={**FHIR, **harness.auth(TEAM)}
    )
    [orientation] = _tasks(harness, CPTS, code=ORIENTATION)
    assert orientation["statusReason"]["coding"][0]["code"] == "handoff-declined"


# --- what an attacker would try -------------------------------------------------------------------------


def _other_cpts(h: Harness) -> None:
    h.tokens[OTHER_CPTS] = h.service.runtime.directory.add(Role.CPTS, OTHER_CPTS, "CPTS Est")


def test_another_cpts_cannot_assign_nor_see_the_orientation_and_the_attempt_is_audited(harness):
    orientation = _discharge_without_team(harness)
    _other_cpts(harness)
    assert _assign(harness, orientation["id"], TEAM, org=OTHER_CPTS).status_code == 404
    assert _tasks(harness, OTHER_CPTS) == []
    read = harness.client.get(f"/discharge/fhir/Task/{orientation['id']}", headers=harness.auth(OTHER_CPTS))
    assert read.status_code == 404
    with harness.service.runtime.sessions() as session:
        refusals = session.execute(select(AuditEntry).where(AuditEntry.action == "orientation.assign")).scalars()
        assert any(r.organisation_id == OTHER_CPTS and r.outcome != "ok" for r in refusals)


def test_a_team_cannot_assign(harness):
    orientation = _discharge_without_team(harness)
    assert _assign(harness, orientation["id"], TEAM, org=TEAM).status_code == 403


def test_a_replayed_assign_creates_one_handoff_and_tells_once(harness):
    orientation = _discharge_without_team(harness)
    first = _assign(harness, orientation["id"], TEAM)
    second = _assign(harness, orientation["id"], TEAM)
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json()
    assert len(_tasks(harness, TEAM, code="handoff")) == 1
    assert len(harness.notifications("orientation.assigned")) == 1
    # while the team decides, proposing another one is a conflict
    assert _assign(harness, orientation["id"], OTHER_TEAM).status_code == 409


@pytest.mark.parametrize("team", ["Dr Dupont, 12 rue des Lilas", CPTS, FINESS, "", 42, "x" * 300])
def test_assign_refuses_free_text_and_ids_of_other_roles(harness, team):
    orientation = _discharge_without_team(harness)
    response = _assign(harness, orientation["id"], team)
    assert response.status_code == 422, response.text
    assert response.json()["resourceType"] == "OperationOutcome"
    assert "Dupont" not in response.text


def test_assign_takes_a_value_identifier(harness):
    orientation = _discharge_without_team(harness)
    ident = {"system": "https://relais.example.org/fhir/NamingSystem/organisation", "value": TEAM}
    assert _assign(harness, orientation["id"], ident, kind="valueIdentifier").status_code == 200


def test_a_team_cannot_accept_a_handoff_addressed_to_another_team(harness):
    orientation = _discharge_without_team(harness)
    _assign(harness, orientation["id"], TEAM)
    [handoff] = _tasks(harness, TEAM, code="handoff")
    stolen = harness.client.post(f"/discharge/fhir/Task/{handoff['id']}/$accept", headers=harness.auth(OTHER_TEAM))
    assert stolen.status_code == 404
    assert _tasks(harness, OTHER_TEAM) == []  # a team never sees another team's Tasks
    assert _registry_updates(harness) == []


def test_task_search_pages_caps_count_and_refuses_unknown_parameters(harness):
    harness.territory()
    for n in range(3):
        message = f.full_discharge_message(plan=PLAN, nda=f"NDA-{n}", message_id=f"m-{n}")
        assert harness.post_message(message).status_code == 200
    huge = _search(harness, CPTS, _count="1000000000")
    assert huge.status_code == 200 and len(huge.json()["entry"]) == 3
    page = _search(harness, CPTS, _count="2").json()
    assert len(page["entry"]) == 2
    [next_link] = [link["url"] for link in page["link"] if link["relation"] == "next"]
    rest = harness.client.get(next_link, headers=harness.auth(CPTS)).json()
    ids = {e["resource"]["id"] for e in page["entry"]} | {e["resource"]["id"] for e in rest["entry"]}
    assert len(ids) == 3 and not [link for link in rest["link"] if link["relation"] == "next"]
    for bad in ({"patient": "x"}, {"_count": "-1"}, {"_count": "9" * 50}, {"_lastUpdated": "hier"}, {"status": "x"}):
        response = _search(harness, CPTS, **bad)
        assert response.status_code == 400 and response.json()["resourceType"] == "OperationOutcome"


def test_task_search_filters_by_last_updated(harness):
    _discharge_without_team(harness)
    before = (harness.clock.now - timedelta(hours=1)).isoformat()
    after = (harness.clock.now + timedelta(hours=1)).isoformat()
    assert len(_tasks(harness, CPTS, _lastUpdated=f"ge{before}")) == 1
    assert _tasks(harness, CPTS, _lastUpdated=f"ge{after}") == []
    assert _tasks(harness, CPTS, _lastUpdated=f"le{before}") == []


# --- the reminder before a follow-up is due -----------------------------------------------------------------


@pytest.fixture
def reminding(tmp_path):
    secret = "unit-test-secret-" + "x" * 20
    settings = DischargeSettings(data_dir=tmp_path, environment="test", secret_key=secret, followup_reminder_hours=24)
    directory = Directory(f"sqlite:///{tmp_path / 'auth.sqlite'}")
    tokens = {FINESS: directory.add(Role.HOSPITAL, FINESS, "CHU"), TEAM: directory.add(Role.TEAM, TEAM, "MSP")}
    clock = FakeClock(DISCHARGED_AT + timedelta(hours=1))
    bus = EmbeddedBus(f"sqlite:///{tmp_path / 'bus.sqlite'}")
    service = bootstrap(settings, bus=bus, directory=directory, run_workers=False, clock=clock)
    with TestClient(service.app) as client:
        yield Harness(service, client, clock, tokens, secret)
    service.runtime.close()
    directory.close()
    bus.close()


def test_the_team_referent_is_reminded_a_configured_time_before_the_follow_up_is_due(reminding):
    h = reminding
    h.territory()
    h.careteam()
    response = h.post_message(f.full_discharge_message(plan=PLAN))
    handoff = handlers_suite.task_ids(response.json())["handoff"][0]
    h.client.post(f"/discharge/fhir/Task/{handoff}/$accept", headers=h.auth(TEAM))
    h.clock.now = DISCHARGED_AT + timedelta(days=5, hours=23)
    h.fire()
    assert h.notifications("followup.due") == []
    h.clock.now = DISCHARGED_AT + timedelta(days=6, minutes=1)
    assert h.fire() == 1
    assert h.recipients("followup.due") == {(TEAM, "team", "full")}
    assert h.fire() == 0
