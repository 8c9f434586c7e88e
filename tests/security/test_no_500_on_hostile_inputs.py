"""Issue 19 item 8: inputs that were answered 500 are 4xx OperationOutcomes (or the page's own error), on SQLite
and on PostgreSQL (which refuses strings longer than their column where SQLite stores them)."""

from __future__ import annotations

import copy
import re

import pytest
from fastapi.testclient import TestClient

from services.admissions.bootstrap import bootstrap as admissions_bootstrap
from services.discharge.bootstrap import bootstrap as discharge_bootstrap
from services.snp.bootstrap import bootstrap as snp_bootstrap
from shared.settings import AdmissionsSettings, DischargeSettings, SnpSettings
from tests import factories as f
from tests.security.test_service_inputs import _settings, _start, refused
from tests.unit.test_snp_service import service_request

pytestmark = pytest.mark.attack


@pytest.fixture(params=["sqlite", "postgres"])
def database(request) -> str | None:
    """None for the embedded SQLite default, else a fresh PostgreSQL database."""
    return None if request.param == "sqlite" else request.getfixturevalue("postgres_url")


@pytest.mark.parametrize(
    "bound",
    ["9999-12-31", "gt9999-12-31", "le9999-12-31T23:59:59.999999+00:00", "lt0001-01-01", "ge0001-01-01T00:00:00Z"],
)
def test_task_searches_at_the_end_of_time_are_400s(database, tmp_path, bound):
    with _start(discharge_bootstrap, _settings(DischargeSettings, database, tmp_path), tmp_path) as running:
        response = running.client.get(
            "/discharge/fhir/Task", params={"_lastUpdated": bound}, headers=running.headers("team", "msp-1")
        )
        outcome = refused(response, 400)
        assert outcome["issue"][0]["expression"] == ["_lastUpdated"]


@pytest.mark.parametrize("operation", ["$decline", "$assign"])
@pytest.mark.parametrize("parameter", [5, "x", {"name": "team"}, [5], [{"name": 5}]])
def test_a_parameters_body_that_is_not_a_list_of_parameters_is_a_400(database, tmp_path, operation, parameter):
    role, org = ("team", "msp-1") if operation == "$decline" else ("cpts", "cpts-1")
    with _start(discharge_bootstrap, _settings(DischargeSettings, database, tmp_path), tmp_path) as running:
        response = running.client.post(
            f"/discharge/fhir/Task/some-task/{operation}",
            json={"resourceType": "Parameters", "parameter": parameter},
            headers=running.headers(role, org),
        )
        refused(response, 400)


def test_an_unauthenticated_sign_in_form_with_many_fields_is_the_pages_own_400(tmp_path):
    with _start(discharge_bootstrap, _settings(DischargeSettings, None, tmp_path), tmp_path) as running:
        browser = TestClient(running.service.app, base_url="http://127.0.0.1")
        form = browser.get("/discharge/app/signin")
        nonce = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
        fields = {"token": "rls_x", "csrf": nonce} | {f"f{i}": "v" for i in range(20)}
        response = browser.post("/discharge/app/signin", data=fields, follow_redirects=False)
        assert response.status_code == 400
        assert response.headers["content-type"].startswith("text/html") and "relais_session" not in response.cookies


def test_a_careteam_member_identifier_of_3000_characters_is_a_422(database, tmp_path):
    with _start(admissions_bootstrap, _settings(AdmissionsSettings, database, tmp_path), tmp_path) as running:
        careteam = copy.deepcopy(f.careteam_resource())
        careteam["participant"][0]["member"]["identifier"] = {"system": "urn:oid:1.2.250.1.999.7", "value": "7" * 3000}
        response = running.client.post(
            "/admissions/fhir/CareTeam", json=careteam, headers=running.headers("team", "msp-x")
        )
        outcome = refused(response, 422)
        assert "7777" not in response.text
        assert outcome["issue"][0]["expression"] == ["CareTeam.participant[0].member.identifier.value"]


def test_a_sas_service_request_identifier_of_3000_characters_is_a_422(database, tmp_path):
    with _start(snp_bootstrap, _settings(SnpSettings, database, tmp_path), tmp_path) as running:
        body = service_request("r" * 3000, "88114")
        response = running.client.post("/snp/fhir/ServiceRequest", json=body, headers=running.headers("sas", "sas-88"))
        outcome = refused(response, 422)
        assert outcome["issue"][0]["expression"] == ["ServiceRequest.identifier"]
