"""ANS Cercle de soins, as its examples are shaped (tests/conformance_shapes.py): the IG's CareTeam and its
creation transaction are accepted with a valid INS; a wrong NIR key and empty strings are refused (422)."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from services.admissions.bootstrap import bootstrap
from shared.identifiers import INS_NIR, RPPS, make_rpps
from shared.settings import AdmissionsSettings
from tests import conformance_shapes as shapes

FHIR = "application/fhir+json"


@pytest.fixture
def service(tmp_path):
    service = bootstrap(AdmissionsSettings(environment="test", data_dir=tmp_path), run_workers=False)
    service.tokens = {"team": service.runtime.directory.add("team", "msp-x", "MSP X")}
    yield service
    service.runtime.close()


@pytest.fixture
def client(service):
    return TestClient(service.app)


def post(client, service, path, resource):
    headers = {"Authorization": f"Bearer {service.tokens['team']}", "Content-Type": FHIR}
    return client.post(path, content=json.dumps(resource), headers=headers)


def enrolled(client, service, response):
    """The CareTeam an enrolment recorded: the answer is a 202 pointing at it (docs/privacy.md)."""
    assert response.status_code == 202, response.text
    headers = {"Authorization": f"Bearer {service.tokens['team']}"}
    return client.get(response.headers["location"], headers=headers)


def members(careteam: dict) -> dict[str, dict]:
    return {p["member"].get("type", "?"): p for p in careteam["participant"]}


def test_the_igs_careteam_with_an_ins_is_accepted_without_a_referent(client, service):
    response = enrolled(client, service, post(client, service, "/admissions/fhir/CareTeam", shapes.cds_careteam()))
    assert response.status_code == 200, response.text
    found = members(response.json())
    assert set(found) == {"RelatedPerson", "Organization"}
    assert found["Organization"]["period"]["end"].startswith("2034-12-18")
    # No referent named: the managing organisation is the contact.
    assert response.json()["managingOrganization"][0]["identifier"]["value"] == "msp-x"


def test_a_careteam_known_only_by_a_literal_patient_reference_is_refused_with_the_way_out(client, service):
    response = post(client, service, "/admissions/fhir/CareTeam", shapes.cds_careteam(subject_identifier=False))
    assert response.status_code == 422
    assert "transaction" in response.json()["issue"][0]["diagnostics"]


@pytest.mark.parametrize("build", ["en-empty-name", "empty-translation"])
def test_empty_strings_are_invalid_fhir(client, service, build):
    careteam = shapes.cds_careteam()
    if build == "en-empty-name":
        careteam["name"] = ""
    else:
        careteam = shapes.with_empty_translation(careteam)
    response = post(client, service, "/admissions/fhir/CareTeam", careteam)
    assert response.status_code == 422
    issue = response.json()["issue"][0]
    assert "empty string" in issue["diagnostics"]
    assert issue["expression"][0].startswith("CareTeam.")


@pytest.mark.parametrize("references", ["literal", "uuid"])
def test_the_creation_transaction_is_accepted_with_its_members(client, service, references):
    response = post(client, service, "/admissions/fhir", shapes.cds_transaction(references=references))
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["type"] == "transaction-response"
    statuses = [e["response"]["status"] for e in answer["entry"]]
    assert statuses == ["201 Created", "200 OK", "200 OK", "200 OK"]
    careteam_id = answer["entry"][0]["response"]["location"].split("/")[1]
    read = client.get(
        f"/admissions/fhir/CareTeam/{careteam_id}", headers={"Authorization": f"Bearer {service.tokens['team']}"}
    )
    careteam = read.json()
    assert careteam["subject"]["identifier"]["value"] == shapes.TEST_NIR
    found = members(careteam)
    assert found["RelatedPerson"]["member"]["identifier"]["value"] == "RelatedPerson/cds-relatedperson-1"
    assert found["RelatedPerson"]["member"]["display"] == "Lucie Moreau"
    assert found["Organization"]["member"]["display"] == "Cabinet médical des Thermes"


def test_the_igs_patient_nir_has_a_wrong_key(client, service):
    bundle = shapes.cds_transaction(nir=shapes.IG_WRONG_KEY_NIR, nir_system=INS_NIR)
    response = post(client, service, "/admissions/fhir", bundle)
    assert response.status_code == 422
    assert "key" in response.json()["issue"][0]["diagnostics"].lower()


def test_a_transaction_with_an_empty_translation_is_refused(client, service):
    bundle = shapes.cds_transaction()
    bundle["entry"][1]["resource"] = shapes.with_empty_translation(bundle["entry"][1]["resource"])
    response = post(client, service, "/admissions/fhir", bundle)
    assert response.status_code == 422
    assert "Bundle.entry[1].resource._name" in response.json()["issue"][0]["expression"][0]


def test_ig_roles_and_relais_referent_round_trip(client, service):
    careteam = shapes.cds_careteam()
    rpps = make_rpps("1000777777")
    careteam["participant"].append(
        {
            "role": [
                {"coding": [{"system": shapes.TRE_R259, "code": "PCP"}]},
                {"coding": [{"system": shapes.RELAIS_ROLE, "code": "referent"}]},
            ],
            "member": {"identifier": {"system": RPPS, "value": rpps}, "display": "Dr Jeanne PETIT"},
        }
    )
    careteam["participant"][0]["role"] = [{"coding": [{"system": shapes.TRE_R260, "code": "ECON"}]}]
    careteam["participant"].append(
        {
            "role": [{"coding": [{"system": shapes.TRE_R259, "code": "PCP"}]}],
            "member": {"identifier": {"system": RPPS, "value": make_rpps("1000888888")}},
        }
    )
    response = enrolled(client, service, post(client, service, "/admissions/fhir/CareTeam", careteam))
    assert response.status_code == 200, response.text
    roles = [p["role"][0]["coding"] for p in response.json()["participant"]]
    codes = [{(c["system"], c["code"]) for c in coding} for coding in roles]
    assert (shapes.TRE_R260, "ECON") in codes[0]
    assert (shapes.RELAIS_ROLE, "referent") in codes[2]
    assert {(shapes.RELAIS_ROLE, "medecin-traitant"), (shapes.TRE_R259, "PCP")} <= codes[3]


def test_a_transaction_for_another_organisation_is_forbidden(client, service):
    bundle = shapes.cds_transaction()
    bundle["entry"][1]["resource"]["identifier"] = [{"system": "https://annuaire.example.org", "value": "msp-y"}]
    assert post(client, service, "/admissions/fhir", bundle).status_code == 403


def test_a_transaction_carrying_other_resources_is_refused(client, service):
    bundle = shapes.cds_transaction()
    bundle["entry"].append(
        {
            "fullUrl": "urn:uuid:11111111-1111-4111-8111-111111111119",
            "resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"}},
            "request": {"method": "POST", "url": "Observation"},
        }
    )
    response = post(client, service, "/admissions/fhir", bundle)
    assert response.status_code == 422
    assert "Observation" in response.json()["issue"][0]["diagnostics"]
