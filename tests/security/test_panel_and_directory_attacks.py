"""What a team, a CPTS or a hospital with a valid token would try against patient lists and the team search."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from services.admissions.bootstrap import bootstrap
from shared.directory.importer import import_directory
from shared.identifiers import INS_NIR_TEST, make_finess, make_nir
from shared.settings import AdmissionsSettings
from tests import factories as f
from tests.directory_factories import Establishment, write_finess

pytestmark = pytest.mark.attack

FHIR = "application/fhir+json"
THEIRS = make_nir(2, 61, 4, "88", 160, 321)
NANCY_TEAM = Establishment(make_finess("54000777"), "MSP DE NANCY CENTRE", "603", "54", "395", "54000 NANCY")
EPINAL_TEAM = Establishment(make_finess("88000777"), "MSP D'EPINAL", "603")


@pytest.fixture
def service(tmp_path):
    settings = AdmissionsSettings(environment="test", data_dir=tmp_path, max_body_bytes=200_000, panel_max_members=50)
    service = bootstrap(settings, run_workers=False)
    d = service.runtime.directory
    service.tokens = {
        "mine": d.add("team", "msp-intruse", "MSP Intruse"),
        "theirs": d.add("team", "msp-secrete", "MSP Secrète du Dr Confidentiel"),
        "cpts": d.add("cpts", "cpts-epinal", "CPTS d'Épinal"),
        "admin": d.add("admin", "admin", "Admin"),
    }
    import_directory(d.engine, finess=write_finess(tmp_path / "finess.csv", [NANCY_TEAM, EPINAL_TEAM]))
    service.client = TestClient(service.app)
    yield service
    service.runtime.close()


def auth(service, who: str, content_type: str = FHIR) -> dict[str, str]:
    return {"Authorization": f"Bearer {service.tokens[who]}", "Content-Type": content_type}


def group(*nirs: str) -> dict:
    members = [{"entity": {"identifier": {"system": INS_NIR_TEST, "value": nir}}} for nir in nirs]
    return {"resourceType": "Group", "type": "person", "actual": True, "member": members}


def test_a_panel_naming_another_teams_patient_gets_a_change_request_not_the_patients_data(service):
    careteam = f.careteam_resource(nir=THEIRS, referent_name="Dr Sophie SECRET", postal_code="88000")
    assert (
        service.client.post("/admissions/fhir/CareTeam", json=careteam, headers=auth(service, "theirs")).status_code
        == 202
    )

    answer = service.client.put("/admissions/fhir/Group/all", json=group(THEIRS), headers=auth(service, "mine"))

    assert answer.status_code == 200
    assert answer.json()["issue"][1]["details"]["coding"][0]["code"] == "change-requested"
    for secret in ("msp-secrete", "Secrète", "SECRET", "Sophie", "88000"):
        assert secret not in answer.text
    listed = service.client.get("/admissions/fhir/CareTeam", headers=auth(service, "mine")).text
    assert "SECRET" not in listed and "msp-secrete" not in listed
    # The patient stays with the team that treats them until it answers.
    mine = service.client.get("/admissions/fhir/CareTeam?status=active", headers=auth(service, "mine")).json()
    assert mine.get("total", len(mine.get("entry", []))) == 0


def test_a_removal_cannot_end_another_teams_enrolment(service):
    careteam = f.careteam_resource(nir=THEIRS)
    service.client.post("/admissions/fhir/CareTeam", json=careteam, headers=auth(service, "theirs"))
    answer = service.client.post(
        "/admissions/fhir/Group/all/$remove", json=group(THEIRS), headers=auth(service, "mine")
    )
    assert answer.json()["issue"][1]["details"]["coding"][0]["code"] == "not-listed"
    theirs = service.client.get("/admissions/fhir/CareTeam?status=active", headers=auth(service, "theirs")).json()
    assert len(theirs["entry"]) == 1


def test_an_oversized_group_is_a_413(service):
    nirs = [make_nir(1, 70, 1, "88", 160, i) for i in range(1, 52)]
    answer = service.client.put("/admissions/fhir/Group/all", json=group(*nirs), headers=auth(service, "mine"))
    assert answer.status_code == 413 and answer.json()["resourceType"] == "OperationOutcome"


def test_a_deeply_nested_group_is_refused_before_any_enrolment(service):
    nested: dict = {"url": "http://example.org/leaf", "valueString": "x"}
    for level in range(300):
        nested = {"url": f"http://example.org/e{level}", "extension": [nested]}
    body = {**group(THEIRS), "extension": [nested]}
    answer = service.client.put("/admissions/fhir/Group/all", json=body, headers=auth(service, "mine"))
    assert answer.status_code in (400, 413, 422) and answer.json()["resourceType"] == "OperationOutcome"
    assert service.client.get("/admissions/fhir/CareTeam", headers=auth(service, "mine")).json().get("entry") is None


def test_a_csv_formula_is_refused_and_never_echoed(service):
    nir = make_nir(1, 70, 1, "88", 160, 5)
    body = f'{nir};=CMD("calc");Jean;1970-01-15;88000\n{nir[:-2]}00;@SUM(A1);Jean;1970-01-15;88000\n'.encode()
    answer = service.client.post(
        "/admissions/fhir/Group/all/$add", content=body, headers=auth(service, "mine", "text/csv")
    )
    codes = [i["details"]["coding"][0]["code"] for i in answer.json()["issue"][1:]]
    assert codes == ["refused", "refused"]
    assert "CMD" not in answer.text and "SUM" not in answer.text


def test_a_10_mb_csv_line_is_a_413_and_a_long_line_within_the_limit_is_refused_alone(service):
    huge = b"1" * 10_000_000
    answer = service.client.post(
        "/admissions/fhir/Group/all/$add", content=huge, headers=auth(service, "mine", "text/csv")
    )
    assert answer.status_code == 413
    nir = make_nir(1, 70, 1, "88", 160, 6)
    body = f"{nir};{'X' * 5000};Jean;1970-01-15;88000\n{nir};DUPONT;Jean;1970-01-15;88000\n".encode()
    answer = service.client.post(
        "/admissions/fhir/Group/all/$add", content=body, headers=auth(service, "mine", "text/csv")
    )
    codes = [i["details"]["coding"][0]["code"] for i in answer.json()["issue"][1:]]
    assert codes == ["refused", "enrolled"]


def test_a_cpts_cannot_find_teams_outside_its_territory(service):
    admin = {"Authorization": f"Bearer {service.tokens['admin']}"}
    service.client.put("/admissions/territories/88000", json={"cpts": "cpts-epinal"}, headers=admin)
    cpts = {"Authorization": f"Bearer {service.tokens['cpts']}"}

    for params in ({"name": "nancy"}, {"commune": "54395"}, {"commune": "Nancy"}, {"name": "%"}, {"name": "_%_"}):
        answer = service.client.get("/admissions/teams", params=params, headers=cpts)
        assert answer.status_code in (200, 400)
        assert "NANCY" not in answer.text, params
    assert [t["name"] for t in service.client.get("/admissions/teams?name=msp", headers=cpts).json()["teams"]] == [
        "MSP D'EPINAL"
    ]


def test_a_team_cannot_upload_a_list_for_another_team_nor_search_the_directory(service):
    theirs = auth(service, "theirs")
    service.client.put("/admissions/fhir/Group/all", json=group(THEIRS), headers=theirs)
    # The same group id under another team's token is that team's own list: it never touches the first team's.
    service.client.put("/admissions/fhir/Group/all", json=group(), headers=auth(service, "mine"))
    assert len(service.client.get("/admissions/fhir/CareTeam?status=active", headers=theirs).json()["entry"]) == 1
    assert service.client.get("/admissions/teams?name=msp", headers=theirs).status_code == 403
