"""`GET /admissions/teams`: coordinators find treating teams of their territory by name or commune."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from services.admissions.bootstrap import bootstrap
from shared.directory.importer import import_directory
from shared.identifiers import make_finess
from shared.settings import AdmissionsSettings
from tests.directory_factories import Establishment, doctor, hospital, write_finess, write_rpps

CHU = hospital("88000123", "CENTRE HOSPITALIER ÉMILE DURKHEIM")
LILAS = Establishment(make_finess("88000777"), "MAISON DE SANTÉ DES LILAS", "603")
NANCY = Establishment(
    make_finess("54000777"), "MAISON DE SANTÉ DES LILAS DE NANCY", "603", "54", "395", "54000 NANCY"
)
SAINT_DIE = Establishment(
    make_finess("88000999"), "CENTRE DE SANTÉ DE LA MEURTHE", "124", "88", "413", "88100 SAINT DIE DES VOSGES"
)


def import_territory(service, folder: Path) -> None:
    finess = write_finess(folder / "finess.csv", [CHU, LILAS, NANCY, SAINT_DIE])
    activities = [
        doctor(1, "R1", "Maison de santé des Lilas", finess=LILAS.finess),
        doctor(2, "R1", "Maison de santé des Lilas", finess=LILAS.finess, profession_code="60", profession="Infirmier"),
        doctor(3, "R1", "Maison de santé des Lilas", finess=LILAS.finess),
        doctor(4, "R9", "Cabinet du Dr Quatre"),
    ]
    import_directory(service.runtime.directory.engine, finess=finess, rpps=write_rpps(folder / "rpps.txt", activities))


@pytest.fixture
def service(tmp_path):
    settings = AdmissionsSettings(environment="test", data_dir=tmp_path)
    service = bootstrap(settings, run_workers=False)
    d = service.runtime.directory
    service.tokens = {
        "cpts": d.add("cpts", "cpts-epinal", "CPTS d'Épinal"),
        "cpts_idle": d.add("cpts", "cpts-idle", "CPTS sans territoire"),
        "hospital": d.add("hospital", CHU.finess, "CHU"),
        "team": d.add("team", LILAS.finess, "MSP"),
        "admin": d.add("admin", "admin", "Admin"),
    }
    import_territory(service, tmp_path)
    client = TestClient(service.app)
    admin = {"Authorization": f"Bearer {service.tokens['admin']}"}
    assert client.put("/admissions/territories/88000", json={"cpts": "cpts-epinal"}, headers=admin).status_code == 200
    service.client = client
    yield service
    service.runtime.close()


def find(service, who: str, **params: str):
    return service.client.get(
        "/admissions/teams", params=params, headers={"Authorization": f"Bearer {service.tokens[who]}"}
    )


def test_a_cpts_finds_a_team_of_its_territory_by_name_with_its_members_professions(service):
    answer = find(service, "cpts", name="lilas")
    assert answer.status_code == 200, answer.text
    teams = answer.json()["teams"]
    assert [t["name"] for t in teams] == ["MAISON DE SANTÉ DES LILAS"]  # Nancy's Lilas is not its territory
    lilas = teams[0]
    assert (lilas["id"], lilas["registered"]) == (LILAS.finess, True)
    assert lilas["commune"] == {"code": "88160", "display": "Épinal"}
    assert {(p["display"], p["count"]) for p in lilas["professions"]} == {("Médecin", 2), ("Infirmier", 1)}


def test_a_commune_is_named_by_insee_code_postal_code_or_name(service):
    for commune in ("88160", "88000", "epinal", "Épinal"):
        found = find(service, "cpts", commune=commune).json()["teams"]
        assert [t["id"] for t in found] == ["R9", LILAS.finess], commune  # by name: "Cabinet..." before "Maison..."


def test_a_hospital_searches_its_departement_and_an_administrator_everywhere(service):
    assert {t["name"] for t in find(service, "hospital", name="sante").json()["teams"]} == {
        "MAISON DE SANTÉ DES LILAS",
        "CENTRE DE SANTÉ DE LA MEURTHE",
    }
    assert len(find(service, "admin", name="sante").json()["teams"]) == 3


def test_results_are_bounded_and_say_more_were_left_off(service):
    body = find(service, "admin", name="sante", _count="2").json()
    assert (body["count"], body["more"]) == (2, True)


def test_a_cpts_without_a_territory_finds_nothing(service):
    assert find(service, "cpts_idle", name="lilas").json()["teams"] == []


@pytest.mark.parametrize(
    "params",
    [{}, {"name": "a"}, {"name": "x" * 101}, {"commune": "99999"}, {"name": "lilas", "_count": "0"},
     {"name": "lilas", "_count": "51"}, {"name": "lilas", "_count": "ten"}, {"name": "li\x00las"}],
)  # fmt: skip
def test_bad_parameters_get_a_400_operation_outcome(service, params):
    answer = find(service, "cpts", **params)
    assert answer.status_code == 400
    assert answer.json()["resourceType"] == "OperationOutcome"


def test_a_team_may_not_search_the_directory(service):
    assert find(service, "team", name="lilas").status_code == 403


def test_any_organisation_reads_commune_names_by_insee_code(service):
    answer = service.client.get(
        "/admissions/communes?code=88160&code=88413&code=99999",
        headers={"Authorization": f"Bearer {service.tokens['team']}"},
    )
    assert answer.json()["communes"] == [
        {"code": "88160", "display": "Épinal"},
        {"code": "88413", "display": "Saint-Dié-des-Vosges"},
    ]
    not_a_code = service.client.get(
        "/admissions/communes?code=88160&code=x", headers={"Authorization": f"Bearer {service.tokens['team']}"}
    )
    assert not_a_code.status_code == 400
    too_many = "&".join(f"code={i:05d}" for i in range(101))
    headers = {"Authorization": f"Bearer {service.tokens['team']}"}
    assert service.client.get(f"/admissions/communes?{too_many}", headers=headers).status_code == 400
    assert service.client.get("/admissions/communes?code=88160").status_code == 401
