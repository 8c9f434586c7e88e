"""Patient lists, the directory import and the team search on real PostgreSQL (migrations applied)."""

from __future__ import annotations

from collections import Counter

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from services.admissions.bootstrap import bootstrap
from shared.directory.importer import import_directory
from shared.identifiers import INS_NIR_TEST, make_finess, make_nir
from shared.settings import AdmissionsSettings
from tests import factories as f
from tests.directory_factories import Establishment, doctor, write_finess, write_rpps

FHIR = "application/fhir+json"
NIRS = [make_nir(1 + i % 2, 40 + i % 50, 1 + i % 12, "88", 160, 1 + i) for i in range(600)]


@pytest.fixture
def service(postgres_url, tmp_path):
    settings = AdmissionsSettings(
        database_url=postgres_url, auth_database_url=postgres_url, environment="test", data_dir=tmp_path
    )
    service = bootstrap(settings, run_workers=False)
    d = service.runtime.directory
    service.tokens = {
        "team": d.add("team", "msp-lilas", "MSP des Lilas"),
        "other": d.add("team", "msp-autre", "MSP Autre"),
        "cpts": d.add("cpts", "cpts-epinal", "CPTS d'Épinal"),
        "admin": d.add("admin", "admin", "Admin"),
    }
    service.client = TestClient(service.app)
    yield service
    service.runtime.close()


def auth(service, who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {service.tokens[who]}", "Content-Type": FHIR}


def group(nirs: list[str]) -> dict:
    members = [
        {"entity": {"identifier": {"system": INS_NIR_TEST, "value": nir}, "reference": f"#p{i}"}}
        for i, nir in enumerate(nirs)
    ]
    contained = [
        {"resourceType": "Patient", "id": f"p{i}", "address": [{"postalCode": "88000"}]} for i in range(len(nirs))
    ]
    return {"resourceType": "Group", "type": "person", "actual": True, "contained": contained, "member": members}


def codes(answer) -> Counter:
    assert answer.status_code == 200, answer.text
    return Counter(i["details"]["coding"][0]["code"] for i in answer.json()["issue"][1:])


def test_a_list_over_several_chunks_enrols_replaces_and_is_idempotent_on_postgres(service):
    other = f.careteam_resource(nir=NIRS[300])
    assert (
        service.client.post("/admissions/fhir/CareTeam", json=other, headers=auth(service, "other")).status_code == 202
    )

    first = service.client.put("/admissions/fhir/Group/all", json=group(NIRS), headers=auth(service, "team"))
    again = service.client.put("/admissions/fhir/Group/all", json=group(NIRS), headers=auth(service, "team"))
    replaced = service.client.put("/admissions/fhir/Group/all", json=group(NIRS[:200]), headers=auth(service, "team"))

    assert codes(first) == {"enrolled": 599, "change-requested": 1}
    assert codes(again) == {"already-yours": 599, "change-requested": 1}
    assert codes(replaced) == {"already-yours": 200, "left": 400}
    with service.runtime.engine.connect() as connection:
        active = connection.execute(
            text("select count(*) from admissions_careteam where status = 'active' and team_org_id = 'msp-lilas'")
        ).scalar_one()
        placed = connection.execute(text("select count(*) from admissions_patient where postal_code = '88000'"))
        assert (active, placed.scalar_one()) == (200, 599)


def test_the_directory_import_and_the_team_search_on_postgres(service, tmp_path):
    lilas = Establishment(make_finess("88000777"), "MAISON DE SANTÉ DES LILAS", "603")
    finess = write_finess(tmp_path / "finess.csv", [lilas])
    rpps = write_rpps(tmp_path / "rpps.txt", [doctor(1, "R1", "Cabinet 50%_du_centre")])
    engine = service.runtime.directory.engine
    first = import_directory(engine, finess=finess, rpps=rpps)
    again = import_directory(engine, finess=finess, rpps=rpps)
    assert (first.organisations.added, again.organisations.unchanged) == (2, 2)
    admin = {"Authorization": f"Bearer {service.tokens['admin']}"}
    service.client.put("/admissions/territories/88000", json={"cpts": "cpts-epinal"}, headers=admin)
    cpts = {"Authorization": f"Bearer {service.tokens['cpts']}"}
    found = service.client.get("/admissions/teams", params={"name": "50%_"}, headers=cpts).json()["teams"]
    assert [team["id"] for team in found] == ["R1"]  # % and _ are matched as themselves
    assert [t["id"] for t in service.client.get("/admissions/teams?commune=epinal", headers=cpts).json()["teams"]] == [
        "R1",
        lilas.finess,
    ]
