"""Inputs the review turned into 500s, replayed over HTTP on each service: a 4xx OperationOutcome, on SQLite
and on PostgreSQL (which refuses over-long strings and NUL bytes where SQLite stores them)."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from services.admissions.bootstrap import bootstrap as admissions_bootstrap
from services.notifications.bootstrap import bootstrap as notifications_bootstrap
from services.snp.bootstrap import bootstrap as snp_bootstrap
from shared.auth import Directory
from shared.service import Service
from shared.settings import AdmissionsSettings, NotificationsSettings, ServiceSettings, SnpSettings
from tests import factories as f
from tests.unit.test_notifications_service import subscription

pytestmark = pytest.mark.attack

FHIR = "application/fhir+json"


@pytest.fixture(params=["sqlite", "postgres"])
def database(request) -> str | None:
    """None for the embedded SQLite default, else a fresh PostgreSQL database."""
    return None if request.param == "sqlite" else request.getfixturevalue("postgres_url")


@dataclass
class Running:
    service: Service
    client: TestClient
    directory: Directory

    def headers(self, role: str, org: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.directory.add(role, org, org)}", "Content-Type": FHIR}


@contextmanager
def _start(bootstrap: Any, settings: ServiceSettings, tmp_path) -> Iterator[Running]:
    directory = Directory(f"sqlite:///{tmp_path / 'auth.sqlite'}")
    service = bootstrap(settings, directory=directory, run_workers=False)
    try:
        with TestClient(service.app) as client:
            yield Running(service, client, directory)
    finally:
        service.runtime.close()
        directory.close()


def _settings(cls: type[ServiceSettings], database: str | None, tmp_path, **extra: Any) -> Any:
    schema = {"database_url": database, "database_schema": cls.service} if database else {}
    return cls(environment="test", data_dir=tmp_path, **schema, **extra)


def refused(response, *statuses: int) -> dict:
    assert response.status_code in (statuses or (400, 404, 413, 422)), response.text
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    return body


# --- admissions ------------------------------------------------------------------------------------


def _resource(bundle: dict, kind: str) -> dict:
    return next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == kind)


def _long_nda(bundle: dict) -> None:
    _resource(bundle, "Encounter")["identifier"][0]["value"] = "9" * 301


def _future_birth(bundle: dict) -> None:
    _resource(bundle, "Patient")["birthDate"] = "2999-01-01"


def _nul_in_name(bundle: dict) -> None:
    _resource(bundle, "Patient")["name"][0]["family"] = "MARTIN\u0000"


def _long_local_identifier(bundle: dict) -> None:
    _resource(bundle, "Patient")["identifier"] = [{"system": "urn:oid:1.2.250.1.999.1", "value": "7" * 500}]


@pytest.mark.parametrize("attack", [_long_nda, _future_birth, _nul_in_name, _long_local_identifier])
def test_hostile_admissions_are_4xx_outcomes(database, tmp_path, attack):
    settings = _settings(AdmissionsSettings, database, tmp_path)
    with _start(admissions_bootstrap, settings, tmp_path) as running:
        bundle = f.admission_message()
        attack(bundle)
        response = running.client.post(
            "/admissions/fhir/$process-message", json=bundle, headers=running.headers("hospital", f.DEFAULT_FINESS)
        )
        outcome = refused(response, 422)
        assert "9999" not in response.text and "MARTIN" not in outcome["issue"][0].get("diagnostics", "")


@pytest.mark.parametrize(
    ("field", "value"),
    [("name", "N" * 201), ("participant.display", "D" * 201), ("name", "x\u0000y")],
)
def test_hostile_careteams_are_4xx_outcomes(database, tmp_path, field, value):
    settings = _settings(AdmissionsSettings, database, tmp_path)
    with _start(admissions_bootstrap, settings, tmp_path) as running:
        careteam = copy.deepcopy(f.careteam_resource())
        if field == "name":
            careteam["name"] = value
        else:
            careteam["participant"][0]["member"]["display"] = value
        response = running.client.post(
            "/admissions/fhir/CareTeam", json=careteam, headers=running.headers("team", "msp-x")
        )
        refused(response, 422)


# --- snp -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [["booked"], 42, {"code": "booked"}, "b" * 5000])
def test_an_appointment_status_that_is_not_a_code_is_a_422(database, tmp_path, status):
    with _start(snp_bootstrap, _settings(SnpSettings, database, tmp_path), tmp_path) as running:
        response = running.client.post(
            "/snp/fhir/Appointment/some-id/$status", json={"status": status}, headers=running.headers("sas", "sas-88")
        )
        refused(response, 422)


@pytest.mark.parametrize(
    "query", ["from=0001-01-02", "to=9999-12-31", "from=0001-01-02&to=9999-12-31", "from=2020-01-01&to=2026-01-01",
              "to=9999-12-31T23:59:59"],
)
def test_dashboard_dates_out_of_range_are_4xx(database, tmp_path, query):
    with _start(snp_bootstrap, _settings(SnpSettings, database, tmp_path), tmp_path) as running:
        response = running.client.get(
            f"/snp/dashboard?territory=88-ouest&{query}", headers=running.headers("cpts", "cpts-ouest")
        )
        refused(response, 400, 422)


@pytest.mark.parametrize(
    "query",
    ["start=ge2026-11-23&start=le9999-12-31", "start=ge0001-01-01&start=le2026-11-23",
     "start=ge2026-11-23&start=le2026-11-24&_count=" + "9" * 5000,
     "start=ge2026-11-23&start=le2026-11-24&_offset=" + "9" * 5000],
)
def test_sas_slot_searches_out_of_range_are_not_500s(database, tmp_path, query):
    with _start(snp_bootstrap, _settings(SnpSettings, database, tmp_path), tmp_path) as running:
        response = running.client.get(f"/snp/fhir/Slot?{query}", headers=running.headers("sas", "sas-88"))
        if response.status_code != 200:
            refused(response, 400, 422)


# --- notifications ---------------------------------------------------------------------------------


@pytest.mark.parametrize("since", ["1e20", "100000000000000000000", "-1", "9223372036854775808"])
def test_event_numbers_beyond_bigint_are_4xx(database, tmp_path, since):
    settings = _settings(NotificationsSettings, database, tmp_path)
    with _start(notifications_bootstrap, settings, tmp_path) as running:
        msp = running.headers("team", "msp-1")
        body = subscription()
        body["channel"]["endpoint"] = "https://msp.example.fr/hook"  # never dialled: no worker runs here
        created = running.client.post("/notifications/fhir/Subscription", json=body, headers=msp)
        assert created.status_code == 201, created.text
        url = f"/notifications/fhir/Subscription/{created.json()['id']}/$events?eventsSinceNumber={since}"
        refused(running.client.get(url, headers=msp), 400, 422)


def test_a_webhook_secret_with_a_nul_byte_is_a_422(database, tmp_path):
    settings = _settings(NotificationsSettings, database, tmp_path)
    with _start(notifications_bootstrap, settings, tmp_path) as running:
        response = running.client.post(
            "/notifications/webhooks",
            json={"url": "https://msp.example.fr/hook", "secret": "s" * 20 + "\u0000"},
            headers=running.headers("team", "msp-1"),
        )
        refused(response, 422)
