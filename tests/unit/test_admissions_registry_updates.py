"""Admissions on SQLite: the registry update a team's acceptance through orientation sends on the bus, and the
read-backs of consents, DAC cases and territories, each scoped to the caller."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient
from sqlalchemy import select

from services.admissions.adapters.orm import CareTeamRow
from shared.bus.envelope import Envelope
from shared.contracts import TreatingTeamAssigned, registry_update_record
from shared.db.tables import OutboxMessage
from shared.events import TOPIC_CARETEAM, TOPIC_REGISTRY_UPDATES
from shared.identifiers import patient_key
from tests import factories as f
from tests.unit import test_admissions_api as api_suite
from tests.unit.test_admissions_api import headers

service, client = api_suite.service, api_suite.client  # the same SQLite service fixtures

SUBJECT = (f.INS_NIR_TEST, f.DEFAULT_NIR)


def _deliver(service, update: TreatingTeamAssigned, message_id: str = "m-1") -> None:
    [loop] = [c for c in service.runtime.consumers if TOPIC_REGISTRY_UPDATES in c._handlers]
    topic, key, kind, data = registry_update_record(update)
    loop._handlers[topic](Envelope(type=kind, key=key, data=data, source="discharge", id=message_id))


def _update(service, team: str = "msp-x", assignment: str = "h-1") -> TreatingTeamAssigned:
    key = patient_key(*SUBJECT, service.runtime.settings.secret_key)
    return TreatingTeamAssigned(
        assignment_id=assignment,
        patient_key=key,
        subject_system=SUBJECT[0],
        subject_value=SUBJECT[1],
        team_org_id=team,
        cpts_org_id="cpts-14",
        postal_code="75014",
    )


def _teams(service) -> list[CareTeamRow]:
    with service.runtime.sessions() as session:
        return list(session.execute(select(CareTeamRow)).scalars())


def _snapshots(service) -> list[dict]:
    with service.runtime.sessions() as session:
        rows = session.execute(select(OutboxMessage).where(OutboxMessage.topic == TOPIC_CARETEAM)).scalars()
        return [json.loads(r.value)["data"] for r in rows]


def test_a_team_accepted_through_orientation_becomes_the_treating_team_once(service, client):
    update = _update(service)
    _deliver(service, update)
    _deliver(service, update)  # redelivered after a restart: handled once
    [team] = _teams(service)
    assert team.team_org_id == "msp-x" and team.status == "active"
    [snapshot] = _snapshots(service)
    assert snapshot["team_org_id"] == "msp-x" and snapshot["status"] == "active"
    listed = client.get("/admissions/fhir/CareTeam", headers=headers(service, "team_x", None))
    assert [e["resource"]["subject"]["identifier"]["value"] for e in listed.json()["entry"]] == [f.DEFAULT_NIR]


def test_a_patient_who_meanwhile_got_another_team_keeps_it(service, client):
    _deliver(service, _update(service, "msp-y", "h-1"), "m-1")
    _deliver(service, _update(service, "msp-x", "h-2"), "m-2")
    assert [t.team_org_id for t in _teams(service)] == ["msp-y"]


def test_an_update_whose_key_does_not_match_its_subject_is_a_poison_message(service):
    forged = _update(service).model_copy(update={"patient_key": "someone-else"})
    try:
        _deliver(service, forged)
    except Exception as exc:
        assert type(exc).__name__ == "PoisonMessage"
    else:
        raise AssertionError("a forged update was applied")
    assert _teams(service) == []


def _admit(service, client: TestClient) -> None:
    """The hospital admits the patient: it is then in the patient's care circle (docs/privacy.md)."""
    message = f.body(f.admission_message())
    admitted = client.post("/admissions/fhir/$process-message", content=message, headers=headers(service, "hospital"))
    assert admitted.status_code == 200, admitted.text


def test_consents_read_back_only_by_who_recorded_them_or_treats_the_patient(service, client: TestClient):
    _admit(service, client)
    recorded = client.post(
        "/admissions/fhir/Consent", content=json.dumps(f.consent_resource()), headers=headers(service, "hospital")
    )
    assert recorded.status_code == 201, recorded.text
    params = {"patient": f"{f.INS_NIR_TEST}|{f.DEFAULT_NIR}"}
    mine = client.get("/admissions/consents", params=params, headers=headers(service, "hospital", None))
    assert mine.status_code == 200 and mine.json()["recorded_by_you"] is True
    assert f.DEFAULT_NIR not in mine.text
    other = client.get("/admissions/consents", params=params, headers=headers(service, "other_hospital", None))
    assert other.status_code == 404
    stranger = client.get("/admissions/consents", params=params, headers=headers(service, "team_y", None))
    assert stranger.status_code == 404
    malformed = client.get("/admissions/consents", params={"patient": "x"}, headers=headers(service, "hospital", None))
    assert malformed.status_code == 400


def test_a_dac_lists_its_own_cases_and_territories_are_scoped(service, client):
    territory = {"cpts": "cpts-14", "dac": "dac-75"}
    client.put("/admissions/territories/75014", json=territory, headers=headers(service, "admin", None))
    _admit(service, client)  # the admitting hospital refers the patient to the DAC (docs/privacy.md)
    body = {"patient": {"system": f.INS_NIR_TEST, "value": f.DEFAULT_NIR}, "dac": "dac-75"}
    referred = client.post("/admissions/dac-cases", json=body, headers=headers(service, "hospital", None))
    assert referred.status_code == 201, referred.text
    cases = client.get("/admissions/dac-cases", params={"status": "open"}, headers=headers(service, "dac", None))
    assert cases.status_code == 200 and len(cases.json()["cases"]) == 1
    assert client.get("/admissions/dac-cases", headers=headers(service, "team_x", None)).status_code == 403
    for code, cpts in (("75014", "cpts-14"), ("75015", "cpts-15")):
        client.put(f"/admissions/territories/{code}", json={"cpts": cpts}, headers=headers(service, "admin", None))
    listed = client.get("/admissions/territories", headers=headers(service, "admin", None)).json()["territories"]
    assert [t["postal_code"] for t in listed] == ["75014", "75015"]
    token = service.runtime.directory.add("cpts", "cpts-14", "CPTS 14")
    own = client.get("/admissions/territories", headers={"Authorization": f"Bearer {token}"}).json()["territories"]
    assert [t["postal_code"] for t in own] == ["75014"]
    assert client.get("/admissions/territories", headers=headers(service, "team_x", None)).status_code == 403
