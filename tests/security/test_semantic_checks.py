"""Issue 19 item 12: values that parse but cannot be true are 4xx naming the element: an admission dated 2999, a
follow-up completed at 0001-01-01, two entries of a Bundle with one fullUrl, a JSON object repeating a key."""

from __future__ import annotations

import json

import pytest

from services.admissions.bootstrap import bootstrap as admissions_bootstrap
from shared.identifiers import make_nir
from shared.settings import AdmissionsSettings
from tests import factories as f
from tests.security.test_service_inputs import _settings, _start, refused
from tests.unit import test_discharge_handlers as handlers_suite
from tests.unit.test_discharge_handlers import TEAM, task_ids

pytestmark = pytest.mark.attack

harness = handlers_suite.harness  # the discharge service on SQLite with a settable clock
PROCESS = "/admissions/fhir/$process-message"


@pytest.fixture(params=["sqlite", "postgres"])
def database(request) -> str | None:
    """None for the embedded SQLite default, else a fresh PostgreSQL database."""
    return None if request.param == "sqlite" else request.getfixturevalue("postgres_url")


def _resource(bundle: dict, kind: str) -> dict:
    return next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == kind)


def _post(running, content: bytes):
    if not hasattr(running, "hospital"):
        running.hospital = running.headers("hospital", f.DEFAULT_FINESS)
    return running.client.post(PROCESS, content=content, headers=running.hospital)


@pytest.mark.parametrize(("element", "value"), [
    ("start", "2999-05-02T08:30:00+02:00"),
    ("start", "1066-10-14T09:00:00+00:00"),
    ("end", "2999-05-03T08:30:00+02:00"),
])
def test_an_admission_dated_out_of_any_real_stay_is_a_422(database, tmp_path, element, value):
    with _start(admissions_bootstrap, _settings(AdmissionsSettings, database, tmp_path), tmp_path) as running:
        bundle = f.admission_message()
        _resource(bundle, "Encounter")["period"][element] = value
        outcome = refused(_post(running, f.body(bundle)), 422)
        assert outcome["issue"][0]["expression"] == [f"Encounter.period.{element}"]


def test_a_bundle_with_two_entries_of_one_full_url_is_a_400(database, tmp_path):
    with _start(admissions_bootstrap, _settings(AdmissionsSettings, database, tmp_path), tmp_path) as running:
        bundle = f.admission_message(reference_style="urn")
        patient = next(e for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
        impostor = json.loads(json.dumps(patient))
        # Same fullUrl, another patient: a reference to it could name either.
        impostor["resource"]["identifier"][0]["value"] = make_nir(1, 60, 1, "75", 114, 7)
        bundle["entry"].append(impostor)
        index = len(bundle["entry"]) - 1
        outcome = refused(_post(running, f.body(bundle)), 400)
        assert outcome["issue"][0]["expression"] == [f"Bundle.entry[{index}].fullUrl"]


def test_a_json_object_that_repeats_a_key_is_a_400_naming_it(database, tmp_path):
    with _start(admissions_bootstrap, _settings(AdmissionsSettings, database, tmp_path), tmp_path) as running:
        text = f.body(f.admission_message()).decode()
        assert text.count('"birthDate": "1955-03-14"') == 1
        # Two birth dates: one parser keeps the first, another the last; Relais keeps neither.
        doubled = text.replace('"birthDate": "1955-03-14"', '"birthDate": "1955-03-14", "birthDate": "2001-01-01"')
        outcome = refused(_post(running, doubled.encode()), 400)
        assert outcome["issue"][0]["expression"] == ["birthDate"]
        # Behind a UTF-8 byte order mark too (the parser reads through it, so must the check).
        outcome = refused(_post(running, b"\xef\xbb\xbf" + doubled.encode()), 400)
        assert outcome["issue"][0]["expression"] == ["birthDate"]


@pytest.mark.parametrize("completed", ["0001-01-01T00:00:00+00:00", "1000-01-01T00:00:00Z", "9999-12-31T23:59:59Z"])
def test_a_follow_up_completed_out_of_time_is_a_422(harness, completed):
    harness.territory()
    harness.careteam()
    plan = (("gp-visit", "Consultation du médecin traitant sous 7 jours", 7 * 24.0),)
    response = harness.post_message(f.full_discharge_message(plan=plan))
    assert response.status_code == 200, response.text
    tasks = task_ids(response.json())
    harness.client.post(f"/discharge/fhir/Task/{tasks['handoff'][0]}/$accept", headers=harness.auth(TEAM))
    done = harness.client.post(
        f"/discharge/fhir/Task/{tasks['gp-visit'][0]}/$complete",
        json={"resourceType": "Parameters", "parameter": [{"name": "completedAt", "valueDateTime": completed}]},
        headers=harness.auth(TEAM) | {"Content-Type": "application/fhir+json"},
    )
    outcome = refused(done, 422)
    assert outcome["issue"][0]["expression"] == ["Parameters.completedAt"]
    still = harness.client.get(f"/discharge/fhir/Task/{tasks['gp-visit'][0]}", headers=harness.auth(TEAM))
    assert still.json()["status"] != "completed"
