"""A team's patient list (panel): Group PUT/$add/$remove and CSV uploads enrol under the care-circle rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from services.admissions import commands
from services.admissions.bootstrap import bootstrap
from shared.identifiers import INS_NIR_TEST, make_nir
from shared.settings import AdmissionsSettings
from tests import factories as f

FHIR = "application/fhir+json"
NIRS = [make_nir(1 + i % 2, 60 + i, 1 + i % 12, "88", 160, 100 + i) for i in range(6)]


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def service(tmp_path):
    clock = Clock()
    settings = AdmissionsSettings(environment="test", data_dir=tmp_path, panel_max_members=20)
    service = bootstrap(settings, run_workers=False, clock=clock)
    d = service.runtime.directory
    service.clock = clock
    service.tokens = {"team": d.add("team", "msp-lilas", "MSP des Lilas"), "other": d.add("team", "msp-autre", "X")}
    service.client = TestClient(service.app)
    yield service
    service.runtime.close()


def auth(service, who: str, content_type: str = FHIR) -> dict[str, str]:
    return {"Authorization": f"Bearer {service.tokens[who]}", "Content-Type": content_type}


def group(*nirs: str, group_type: str = "person") -> dict:
    members = [{"entity": {"identifier": {"system": INS_NIR_TEST, "value": nir}}} for nir in nirs]
    return {"resourceType": "Group", "type": group_type, "actual": True, "member": members}


def outcomes(answer) -> list[tuple[str, str]]:
    """(where, outcome) per line, the summary issue left out."""
    assert answer.status_code == 200, answer.text
    issues = answer.json()["issue"][1:]
    return [(i["expression"][0], i["details"]["coding"][0]["code"]) for i in issues]


def count(service, sql: str) -> int:
    with service.runtime.engine.connect() as connection:
        return int(connection.execute(text(sql)).scalar_one())


def enrol_elsewhere(service, nir: str) -> None:
    careteam = f.careteam_resource(nir=nir)
    assert (
        service.client.post("/admissions/fhir/CareTeam", json=careteam, headers=auth(service, "other")).status_code
        == 202
    )


def test_a_group_enrols_new_patients_and_asks_another_teams_patient_over(service):
    enrol_elsewhere(service, NIRS[1])
    body = group(NIRS[0], NIRS[1])
    body["member"].append({"entity": {"identifier": {"system": "urn:oid:1.2.3", "value": "local-7"}}})

    answer = service.client.put("/admissions/fhir/Group/patients", json=body, headers=auth(service, "team"))

    assert outcomes(answer) == [
        ("Group.member[0]", "enrolled"),
        ("Group.member[1]", "change-requested"),
        ("Group.member[2]", "refused"),
    ]
    assert "msp-autre" not in answer.text and "X" not in answer.json()["issue"][2]["diagnostics"]
    assert count(service, "select count(*) from admissions_team_change where status = 'requested'") == 1
    assert count(service, "select count(*) from admissions_panel_member") == 2


def test_the_same_upload_twice_changes_nothing_the_second_time(service):
    enrol_elsewhere(service, NIRS[1])
    headers = auth(service, "team")
    service.client.put("/admissions/fhir/Group/patients", json=group(NIRS[0], NIRS[1]), headers=headers)
    before = [
        count(service, f"select count(*) from {t}") for t in ("admissions_careteam", "outbox", "admissions_team_change")
    ]

    again = service.client.put("/admissions/fhir/Group/patients", json=group(NIRS[0], NIRS[1]), headers=headers)

    assert outcomes(again) == [("Group.member[0]", "already-yours"), ("Group.member[1]", "change-requested")]
    after = [
        count(service, f"select count(*) from {t}") for t in ("admissions_careteam", "outbox", "admissions_team_change")
    ]
    assert after == before


def test_remove_ends_the_enrolment_and_replace_lets_go_of_who_is_not_in_the_new_list(service):
    headers = auth(service, "team")
    service.client.put("/admissions/fhir/Group/patients", json=group(*NIRS[:3]), headers=headers)

    removed = service.client.post(
        "/admissions/fhir/Group/patients/$remove", json=group(NIRS[0], NIRS[4]), headers=headers
    )
    assert outcomes(removed) == [("Group.member[0]", "removed"), ("Group.member[1]", "not-listed")]
    replaced = service.client.put("/admissions/fhir/Group/patients", json=group(NIRS[1]), headers=headers)

    assert [code for _where, code in outcomes(replaced)] == ["already-yours", "left"]
    assert count(service, "select count(*) from admissions_careteam where status = 'active'") == 1
    assert count(service, "select count(*) from admissions_panel_member") == 1


def test_add_takes_da_vinci_member_id_parameters(service):
    parameters = {
        "resourceType": "Parameters",
        "parameter": [{"name": "memberId", "valueIdentifier": {"system": INS_NIR_TEST, "value": NIRS[2]}}],
    }
    answer = service.client.post("/admissions/fhir/Group/g1/$add", json=parameters, headers=auth(service, "team"))
    assert outcomes(answer) == [("Parameters.parameter[0]", "enrolled")]


def csv_line(nir: str, family: str = "DUPONT", given: str = "Jeanne", born: str | None = None, postal: str = "88000"):
    born = born or f"19{nir[1:3]}-{nir[3:5]}-14"
    return f"{nir};{family};{given};{born};{postal}"


def test_a_csv_enrols_with_a_reason_for_each_refused_line(service):
    rows = [
        "NIR;Nom;Prénom;Date de naissance;Code postal",
        csv_line(NIRS[0], family="LEFÈVRE"),
        csv_line(NIRS[1], born="01/01/1999"),
        csv_line(NIRS[2][:-2] + "00"),
        csv_line(NIRS[3], family='=HYPERLINK("http://evil")'),
        csv_line(NIRS[0]),
        "1;2",
    ]
    body = "\r\n".join(rows).encode("iso-8859-1")

    answer = service.client.post(
        "/admissions/fhir/Group/csv/$add", content=body, headers=auth(service, "team", "text/csv")
    )

    assert outcomes(answer) == [
        ("line 2", "enrolled"),
        ("line 3", "refused"),
        ("line 4", "refused"),
        ("line 5", "refused"),
        ("line 6", "refused"),
        ("line 7", "refused"),
    ]
    reasons = [i["diagnostics"] for i in answer.json()["issue"][2:]]
    assert reasons[0] == "birth date does not match the NIR"
    assert "formula" in reasons[2] and reasons[3] == "the same patient as line 2"
    assert not any(NIRS[2][:13] in reason for reason in reasons)  # reasons never quote the line


def test_more_members_than_the_setting_allows_is_a_413(service):
    answer = service.client.put("/admissions/fhir/Group/big", json=group(*(NIRS * 4)), headers=auth(service, "team"))
    assert answer.status_code == 413
    assert answer.json()["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize(
    "body, status",
    [(group(NIRS[0], group_type="device"), 422), ({"resourceType": "Group", "type": "person"}, 400),
     ({**group(NIRS[0]), "id": "another"}, 400), ({"resourceType": "Patient"}, 400)],
)  # fmt: skip
def test_a_group_that_is_not_a_patient_list_is_refused(service, body, status):
    answer = service.client.put("/admissions/fhir/Group/patients", json=body, headers=auth(service, "team"))
    assert answer.status_code == status, answer.text


def test_a_list_not_confirmed_within_the_period_ages_out(service):
    headers = auth(service, "team")
    service.client.put("/admissions/fhir/Group/patients", json=group(NIRS[0], NIRS[1]), headers=headers)
    service.clock.now += timedelta(days=200)
    service.client.post("/admissions/fhir/Group/patients/$add", json=group(NIRS[1]), headers=headers)  # confirmed
    service.clock.now += timedelta(days=200)

    assert service.app.state.bus.handle(commands.ExpirePanels()) == 1

    assert count(service, "select count(*) from admissions_panel_member") == 1
    assert count(service, "select count(*) from admissions_careteam where status = 'active'") == 1


def notices(service) -> list[dict]:
    import json

    with service.runtime.engine.connect() as connection:
        rows = connection.execute(text("select value from outbox where event_type = 'careteam.expiring'")).scalars()
        return [json.loads(value)["data"] for value in rows]


def test_the_team_is_told_once_before_a_patient_ages_out_of_its_list(service):
    service.client.put("/admissions/fhir/Group/patients", json=group(NIRS[0]), headers=auth(service, "team"))
    service.clock.now += timedelta(days=340)  # within the 30-day notice, before the 365-day period

    assert service.app.state.bus.handle(commands.ExpirePanels()) == 0
    service.app.state.bus.handle(commands.ExpirePanels())

    told = notices(service)
    assert [(n["recipient"], n["detail"]) for n in told] == [("msp-lilas", "full")]
    careteam = next(e["resource"] for e in told[0]["payload"]["entry"] if e["resource"]["resourceType"] == "CareTeam")
    assert careteam["period"]["end"].startswith("2027-12-01")
    service.clock.now += timedelta(days=30)
    assert service.app.state.bus.handle(commands.ExpirePanels()) == 1
