"""The care-circle attacks of issue 11 (item 3) against admissions and discharge as processes, on PostgreSQL and
a Kafka broker, over HTTP: the same answers as on the embedded default (tests/security/test_care_circle_matrix.py).
"""

from __future__ import annotations

import json
import time
import uuid

import httpx
import pytest
from sqlalchemy import create_engine, text

from shared.events import Role
from shared.identifiers import make_finess, make_nir
from tests import factories as f
from tests.e2e.harness import RelaisProcesses

pytestmark = [pytest.mark.postgres, pytest.mark.kafka, pytest.mark.timeout(300)]

FHIR = "application/fhir+json"
H1, H2 = make_finess("75000111"), make_finess("13000121")
T1, T2 = "msp-e2e-circle-one", "msp-e2e-circle-two"
D1 = "dac-e2e-circle"


@pytest.fixture(scope="module")
def relais(postgres, tansu, tmp_path_factory):
    processes = RelaisProcesses(
        postgres, tansu, tmp_path_factory.mktemp("e2e-circle"), services=("admissions", "discharge")
    )
    try:
        yield processes.start()
    finally:
        processes.close()


@pytest.fixture(scope="module")
def world(relais):
    tokens = {
        "h1": relais.register(Role.HOSPITAL, H1, "CHU"),
        "h2": relais.register(Role.HOSPITAL, H2, "CH"),
        "t1": relais.register(Role.TEAM, T1, "MSP 1"),
        "t2": relais.register(Role.TEAM, T2, "MSP 2"),
        "d1": relais.register(Role.DAC, D1, "DAC"),
        "admin": relais.register(Role.ADMIN, f"admin-{uuid.uuid4().hex[:6]}", "Admin"),
    }
    client = httpx.Client(timeout=30)

    def call(who, method, service, path, body=None, fhir=True):
        headers = {"Authorization": f"Bearer {tokens[who]}"}
        if body is not None:
            headers["Content-Type"] = FHIR if fhir else "application/json"
        content = json.dumps(body) if body is not None else None
        return client.request(method, f"{relais.url(service)}{path}", content=content, headers=headers)

    put = call("admin", "PUT", "admissions", "/admissions/territories/75014", {"cpts": None, "dac": D1}, fhir=False)
    assert put.status_code == 200, put.text
    yield call
    client.close()


def message(bundle: dict) -> dict:
    bundle["entry"][1]["resource"]["identifier"][0]["value"] = f"NDA-{uuid.uuid4().hex[:10]}"
    return bundle


def new_nir() -> str:
    return make_nir(2, 70, 6, "75", 114, int(uuid.uuid4().int % 900) + 1)


def enrol(call, who, nir, team_org):
    resource = f.careteam_resource(nir=nir, postal_code="75014", managing_org=team_org)
    return call(who, "POST", "admissions", "/admissions/fhir/CareTeam", resource)


def wait_for_mirror(relais, nir_count: int, deadline: float = 60.0) -> None:
    """Discharge has mirrored the care teams (consumed from the broker)."""
    engine = create_engine(relais.database_url)
    end = time.monotonic() + deadline
    try:
        while time.monotonic() < end:
            with engine.connect() as connection:
                found = connection.execute(
                    text("select count(*) from discharge.discharge_careteam_mirror where team_org_id is not null")
                ).scalar()
            if found and found >= nir_count:
                return
            time.sleep(0.2)
    finally:
        engine.dispose()
    raise AssertionError(f"discharge mirrored fewer than {nir_count} care teams in {deadline}s\n{relais.logs()}")


def test_care_circle_attacks_fail_on_the_services_as_processes(relais, world):
    call = world
    own, other = new_nir(), new_nir()
    assert enrol(call, "t1", own, T1).status_code == 202
    assert enrol(call, "t2", other, T2).status_code == 202
    admitted = call("h1", "POST", "admissions", "/admissions/fhir/$process-message",
                    message(f.admission_message(finess=H1, nir=own)))
    assert admitted.status_code == 200, admitted.text

    # A DAC cannot open a case for any NIR; a team outside the circle cannot refer one; the team can.
    referral = {"patient": {"system": f.INS_NIR_TEST, "value": other}, "dac": D1}
    assert call("d1", "POST", "admissions", "/admissions/dac-cases", referral, fhir=False).status_code == 403
    foreign = call("t1", "POST", "admissions", "/admissions/dac-cases", referral, fhir=False)
    unknown_referral = {"patient": {"system": f.INS_NIR_TEST, "value": new_nir()}, "dac": D1}
    unknown = call("t1", "POST", "admissions", "/admissions/dac-cases", unknown_referral, fhir=False)
    assert foreign.status_code == unknown.status_code == 404 and foreign.text == unknown.text
    own_referral = {"patient": {"system": f.INS_NIR_TEST, "value": own}, "dac": D1}
    assert call("h1", "POST", "admissions", "/admissions/dac-cases", own_referral, fhir=False).status_code == 201

    # An unrelated team cannot record consent for another team's patient.
    permit = f.consent_resource(nir=other, opposed=False)
    refused = call("t1", "POST", "admissions", "/admissions/fhir/Consent", permit)
    assert refused.status_code == 404 and T2 not in refused.text
    assert call("t2", "POST", "admissions", "/admissions/fhir/Consent", permit).status_code == 201

    # Enrolling another team's patient: the unknown patient's answer, and a request the current team sees.
    taken = enrol(call, "t1", other, T1)
    fresh = enrol(call, "t1", new_nir(), T1)
    assert taken.status_code == fresh.status_code == 202 and taken.text == fresh.text
    assert T2 not in taken.text
    to_answer = call("t2", "GET", "admissions", "/admissions/team-changes").json()["to_answer"]
    assert [c["requested_by"] for c in to_answer] == [T1]

    # A discharge by a hospital that never admitted the patient is taken, and does not name the team.
    wait_for_mirror(relais, 2)
    answer = call("h2", "POST", "discharge", "/discharge/fhir/$process-message",
                  message(f.discharge_message(finess=H2, nir=own)))
    assert answer.status_code == 200, answer.text
    assert T1 not in answer.text
    tasks = [e["resource"] for e in answer.json()["entry"] if e["resource"]["resourceType"] == "Task"]
    assert tasks and all("owner" not in t for t in tasks)
    read = call("t2", "GET", "discharge", f"/discharge/fhir/Task/{tasks[0]['id']}")
    assert read.status_code == 404 and T1 not in read.text
