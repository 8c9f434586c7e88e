"""Admissions HTTP surface on SQLite and the embedded log: status codes, OperationOutcomes, scoping."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from services.admissions.bootstrap import bootstrap
from shared.identifiers import make_finess, make_rpps
from shared.settings import AdmissionsSettings
from tests import factories as f

FHIR = "application/fhir+json"


@pytest.fixture
def service(tmp_path):
    settings = AdmissionsSettings(environment="test", data_dir=tmp_path, max_body_bytes=200_000)
    service = bootstrap(settings, run_workers=False)
    d = service.runtime.directory
    service.tokens = {
        "hospital": d.add("hospital", f.DEFAULT_FINESS, "CHU Exemple"),
        "other_hospital": d.add("hospital", make_finess("13000001"), "CH Autre"),
        "team_x": d.add("team", "msp-x", "MSP X"),
        "team_y": d.add("team", "msp-y", "MSP Y"),
        "dac": d.add("dac", "dac-75", "DAC 75"),
        "admin": d.add("admin", "admin", "Admin"),
    }
    yield service
    service.runtime.close()


@pytest.fixture
def client(service):
    return TestClient(service.app)


def headers(service, who, content_type=FHIR):
    h = {"Authorization": f"Bearer {service.tokens[who]}"}
    if content_type:
        h["Content-Type"] = content_type
    return h


def count(service, table):
    with service.runtime.engine.connect() as connection:
        return connection.execute(text(f"select count(*) from {table}")).scalar()


def _without(path):
    def change(bundle):
        entry = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == path[0])
        del entry[path[1]]
        return bundle

    return change


def _bad_nir(bundle):
    patient = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
    value = patient["identifier"][0]["value"]
    patient["identifier"][0]["value"] = value[:-2] + ("00" if value[-2:] != "00" else "01")
    return bundle


def _bad_finess(bundle):
    org = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Organization")
    value = org["identifier"][0]["value"]
    org["identifier"][0]["value"] = value[:-1] + str((int(value[-1]) + 1) % 10)
    return bundle


def _unknown_code(bundle):
    bundle["entry"][0]["resource"]["eventCoding"]["code"] = "XYZ"
    return bundle


def _not_a_message(bundle):
    bundle["type"] = "collection"
    return bundle


BAD_INPUTS = {
    "invalid JSON": (lambda b: b"{not json", FHIR, "hospital", 400),
    "wrong content type": (lambda b: f.body(b), "text/plain", "hospital", 415),
    "a Bundle that is not a message": (lambda b: f.body(_not_a_message(b)), FHIR, "hospital", 400),
    "unknown event code": (lambda b: f.body(_unknown_code(b)), FHIR, "hospital", 422),
    "Encounter without subject": (
        lambda b: f.body(_without(("Encounter", "subject"))(b)),
        FHIR,
        "hospital",
        422,
    ),
    "Patient without identifier": (
        lambda b: f.body(_without(("Patient", "identifier"))(b)),
        FHIR,
        "hospital",
        422,
    ),
    "INS with a wrong key": (lambda b: f.body(_bad_nir(b)), FHIR, "hospital", 422),
    "FINESS with a wrong check digit": (lambda b: f.body(_bad_finess(b)), FHIR, "hospital", 422),
    "a body over the limit": (lambda b: b" " * 300_000, FHIR, "hospital", 413),
    "a message from a non-hospital token": (lambda b: f.body(b), FHIR, "team_x", 403),
    "another hospital's FINESS": (lambda b: f.body(b), FHIR, "other_hospital", 403),
    "a discharge": (lambda b: f.body(f.discharge_message()), FHIR, "hospital", 422),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_gets_a_4xx_operation_outcome_and_leaves_nothing_behind(service, client, case):
    make, content_type, who, status = BAD_INPUTS[case]
    response = client.post(
        "/admissions/fhir/$process-message",
        content=make(f.admission_message()),
        headers=headers(service, who, content_type),
    )
    assert response.status_code == status, response.text
    assert response.json()["resourceType"] == "OperationOutcome"
    assert count(service, "outbox") == 0
    assert count(service, "admissions_admission") == 0
    assert count(service, "admissions_message") == 0


def test_a_discharge_is_pointed_at_the_discharge_service(service, client):
    response = client.post(
        "/admissions/fhir/$process-message",
        content=f.body(f.discharge_message()),
        headers=headers(service, "hospital"),
    )
    assert "/discharge/fhir/$process-message" in json.dumps(response.json())


def test_an_admission_is_answered_with_an_ok_message_response(service, client):
    bundle = f.admission_message()
    response = client.post(
        "/admissions/fhir/$process-message", content=f.body(bundle), headers=headers(service, "hospital")
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(FHIR)
    header = response.json()["entry"][0]["resource"]
    assert header["response"]["code"] == "ok"
    assert header["response"]["identifier"] == bundle["entry"][0]["resource"]["id"]


def test_care_team_lifecycle_is_scoped_to_the_team(service, client):
    created = client.post(
        "/admissions/fhir/CareTeam",
        content=json.dumps(f.careteam_resource()),
        headers=headers(service, "team_x"),
    )
    assert created.status_code == 202, created.text
    location = created.headers["location"]
    assert location.startswith("/admissions/fhir/CareTeam/")
    assert client.get(location, headers=headers(service, "team_x", None)).json()["status"] == "active"
    assert client.get(location, headers=headers(service, "team_y", None)).status_code == 404
    assert client.delete(location, headers=headers(service, "team_y", None)).status_code == 404
    assert client.get(location, headers=headers(service, "hospital", None)).status_code == 403
    mine = client.get("/admissions/fhir/CareTeam", headers=headers(service, "team_x", None)).json()
    theirs = client.get("/admissions/fhir/CareTeam", headers=headers(service, "team_y", None)).json()
    assert (mine["type"], mine["total"], theirs["total"]) == ("searchset", 1, 0)
    params = f.change_referent_parameters(rpps=make_rpps("1000999999"))
    changed = client.post(
        f"{location}/$change-referent", content=json.dumps(params), headers=headers(service, "team_x")
    )
    assert changed.status_code == 200, changed.text
    ended = client.delete(location, headers=headers(service, "team_x", None))
    assert ended.status_code == 200 and ended.json()["status"] == "inactive"
    assert count(service, "audit_log") >= 3  # two foreign-team attempts and the hospital's role refusal


def test_a_team_cannot_enrol_for_another_organisation(service, client):
    resource = f.careteam_resource(managing_org="msp-y")
    response = client.post(
        "/admissions/fhir/CareTeam", content=json.dumps(resource), headers=headers(service, "team_x")
    )
    assert response.status_code == 403
    assert count(service, "admissions_careteam") == 0


def test_consent_dac_case_and_territory_endpoints(service, client):
    territory = {"cpts": "cpts-14", "dac": "dac-75"}
    put = client.put("/admissions/territories/75014", json=territory, headers=headers(service, "admin", None))
    assert put.status_code == 200
    admission = f.body(f.admission_message())
    admitted = client.post("/admissions/fhir/$process-message", content=admission, headers=headers(service, "hospital"))
    assert admitted.status_code == 200, admitted.text
    consent = client.post(
        "/admissions/fhir/Consent",
        content=json.dumps(f.consent_resource()),
        headers=headers(service, "hospital"),
    )
    assert consent.status_code == 201, consent.text
    case = client.post(
        "/admissions/dac-cases",
        json={"patient": {"system": f.INS_NIR_TEST, "value": f.DEFAULT_NIR}, "dac": "dac-75"},
        headers=headers(service, "hospital", None),
    )
    assert case.status_code == 201, case.text
    closed = client.delete(
        f"/admissions/dac-cases/{case.json()['id']}", headers=headers(service, "dac", None)
    )
    assert closed.json()["status"] == "closed"
    refused = client.put(
        "/admissions/territories/75014", json={"cpts": "x"}, headers=headers(service, "team_x", None)
    )
    assert refused.status_code == 403


def test_metadata_lists_the_registry_and_messaging(client):
    statement = client.get("/admissions/metadata").json()
    types = {r["type"] for r in statement["rest"][0]["resource"]}
    assert types == {"CareTeam", "Consent", "Group", "MessageHeader", "CommunicationRequest"}  # NdE door; patient lists
    assert statement["messaging"]
