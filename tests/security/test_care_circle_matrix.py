"""Attacker tests of the care circle (issue 11, item 3), over HTTP on the embedded default (`relais run`'s app).

Every organisation holds a valid token; each tries the patient-scoped endpoints on four patients: its own, another
team's, an unknown one, and one living in another territory. Outside the circle the answer is the unknown
patient's (404, same body), and no answer carries the other organisation's id or the patient's data.
"""

from __future__ import annotations

import itertools
import json
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from relais.combined import combined_app
from relais.services import SERVICE_NAMES, bootstrapper
from services.admissions.adapters.orm import ConsentRow
from services.discharge.adapters.orm import CareTeamMirrorRow
from shared.auth import Directory
from shared.events import Role
from shared.identifiers import make_finess, make_nir, patient_key
from shared.settings import RelaisSettings
from tests import factories as f

pytestmark = pytest.mark.attack

FHIR = "application/fhir+json"
ORGS = {
    "h1": (Role.HOSPITAL, make_finess("75000011")),
    "h2": (Role.HOSPITAL, make_finess("13000021")),
    "t1": (Role.TEAM, "msp-circle-one"),
    "t2": (Role.TEAM, "msp-circle-two"),
    "c1": (Role.CPTS, "cpts-circle-paris"),
    "c2": (Role.CPTS, "cpts-circle-marseille"),
    "d1": (Role.DAC, "dac-circle-paris"),
    "d2": (Role.DAC, "dac-circle-marseille"),
    "admin": (Role.ADMIN, "admin-circle"),
}
_orders = itertools.count(100)


def new_nir() -> str:
    return make_nir(1, 61, 4, "75", 114, next(_orders))


def unique_encounter(bundle: dict) -> dict:
    """The factory's NDA is the same for every message: give each its own encounter."""
    bundle["entry"][1]["resource"]["identifier"][0]["value"] = f"NDA-{uuid.uuid4().hex[:10]}"
    return bundle


@dataclass
class Patient:
    nir: str
    postal_code: str
    careteam: str | None = None


@dataclass
class Relais:
    client: TestClient
    tokens: dict[str, str]
    services: list
    patients: dict[str, Patient] = field(default_factory=dict)

    def call(self, who: str, method: str, path: str, *, body: dict | None = None, fhir: bool = True):
        headers = {"Authorization": f"Bearer {self.tokens[who]}"}
        content = None
        if body is not None:
            headers["Content-Type"] = FHIR if fhir else "application/json"
            content = json.dumps(body)
        return self.client.request(method, path, content=content, headers=headers)

    def org(self, who: str) -> str:
        return ORGS[who][1]

    def enrol(self, who: str, nir: str, postal_code: str | None = None):
        return self.call(who, "POST", "/admissions/fhir/CareTeam", body=f.careteam_resource(
            nir=nir, postal_code=postal_code, managing_org=self.org(who)
        ))

    def admit(self, who: str, nir: str, postal_code: str):
        bundle = unique_encounter(f.admission_message(finess=self.org(who), nir=nir, postal_code=postal_code))
        return self.call(who, "POST", "/admissions/fhir/$process-message", body=bundle)

    def discharge(self, who: str, nir: str, postal_code: str = "75014"):
        bundle = unique_encounter(f.discharge_message(finess=self.org(who), nir=nir, postal_code=postal_code))
        return self.call(who, "POST", "/discharge/fhir/$process-message", body=bundle)

    def mirrored(self, count: int, deadline: float = 30.0) -> None:
        """The discharge service has mirrored `count` patients' care teams (the embedded bus is asynchronous)."""
        discharge = next(s for s in self.services if s.name == "discharge")
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            with discharge.runtime.sessions() as session:
                rows = session.execute(select(CareTeamMirrorRow).where(CareTeamMirrorRow.team_org_id.is_not(None)))
                if len(rows.all()) >= count:
                    return
            time.sleep(0.05)
        raise AssertionError(f"discharge did not mirror {count} care teams within {deadline}s")


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def relais(request, tmp_path_factory) -> Iterator[Relais]:
    data_dir = tmp_path_factory.mktemp("circle")
    patch = pytest.MonkeyPatch()
    patch.setenv("RELAIS_DATA_DIR", str(data_dir))
    patch.setenv("RELAIS_ENVIRONMENT", "test")
    if request.param == "postgres":  # the circle is read from each service's store: both stores hold it
        url = request.getfixturevalue("postgres").create_database(f"t_{uuid.uuid4().hex[:16]}")
        for name in SERVICE_NAMES:
            patch.setenv(f"RELAIS_{name.upper()}_DATABASE_URL", url)
            patch.setenv(f"RELAIS_{name.upper()}_DATABASE_SCHEMA", name)
    settings = RelaisSettings()
    directory = Directory(settings.resolved_auth_url, settings.auth_database_schema)
    tokens = {who: directory.add(role, org, who.upper()) for who, (role, org) in ORGS.items()}
    services = [bootstrapper(name)(directory=directory) for name in SERVICE_NAMES]
    with TestClient(combined_app(services)) as client:
        world = Relais(client, tokens, services)
        for postal_code, cpts, dac in (("75014", "c1", "d1"), ("13001", "c2", "d2")):
            body = {"cpts": world.org(cpts), "dac": world.org(dac)}
            put = world.call("admin", "PUT", f"/admissions/territories/{postal_code}", body=body, fhir=False)
            assert put.is_success, put.text
        # own: t1's patient admitted at h1; other: t2's patient admitted at h2; far: t2's, in another territory.
        for name, team, hospital, postal_code in (
            ("own", "t1", "h1", "75014"),
            ("other", "t2", "h2", "75014"),
            ("far", "t2", "h2", "13001"),
        ):
            patient = world.patients[name] = Patient(new_nir(), postal_code)
            enrolled = world.enrol(team, patient.nir, postal_code)
            assert enrolled.status_code == 202, enrolled.text
            patient.careteam = enrolled.headers["location"]
            assert world.admit(hospital, patient.nir, postal_code).status_code == 200
        world.patients["unknown"] = Patient(new_nir(), "75014")
        world.mirrored(3)
        yield world
    for service in services:
        service.runtime.close()
    patch.undo()


def _scrub(text: str) -> str:
    """An answer without its ids (uuids, request-specific identifiers), to compare two answers' shape."""
    return re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "ID", text)


def leaks(relais: Relais, text: str, *, patient: Patient | None = None, caller: str) -> list[str]:
    """What an answer to `caller` carries that is not the caller's: other organisations' ids, the NIR."""
    found = [org for who, (_, org) in ORGS.items() if who != caller and org in text]
    if patient is not None and patient.nir in text:
        found.append("the patient's NIR")
    return found


def identifier(patient: Patient) -> dict:
    return {"system": f.INS_NIR_TEST, "value": patient.nir}


# --- the matrix: role × endpoint × relation ----------------------------------------------------------------

RELATIONS = ("own", "other", "unknown", "far")
# Who is "own" for each caller: t1 treats it, h1 admitted it.
CALLERS = ("t1", "h1")


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("relation", RELATIONS)
def test_consent_is_recorded_only_inside_the_circle(relais, caller, relation):
    patient = relais.patients[relation]
    permit = f.consent_resource(nir=patient.nir, opposed=False)
    answer = relais.call(caller, "POST", "/admissions/fhir/Consent", body=permit)
    assert answer.status_code == (201 if relation == "own" else 404), answer.text
    if relation != "own":
        unknown = relais.call(caller, "POST", "/admissions/fhir/Consent", body=f.consent_resource(nir=new_nir()))
        assert _scrub(answer.text) == _scrub(unknown.text)
        assert not leaks(relais, answer.text, patient=patient, caller=caller)


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("relation", RELATIONS)
def test_a_dac_referral_needs_the_circle_and_the_territorys_dac(relais, caller, relation):
    patient = relais.patients[relation]
    dac = "d2" if relation == "far" else "d1"
    body = {"patient": identifier(patient), "dac": relais.org(dac)}
    answer = relais.call(caller, "POST", "/admissions/dac-cases", body=body, fhir=False)
    if relation == "own":
        assert answer.status_code in (201, 409), answer.text  # 409: the other caller already referred
        closed = relais.call("d1", "DELETE", f"/admissions/dac-cases/{answer.json().get('id', 'x')}")
        assert closed.status_code in (200, 404)
        wrong = relais.call(caller, "POST", "/admissions/dac-cases", fhir=False,
                            body={"patient": identifier(patient), "dac": relais.org("d2")})
        assert wrong.status_code == 422 and relais.org("d1") not in wrong.text
        return
    assert answer.status_code == 404, answer.text
    unknown = relais.call(caller, "POST", "/admissions/dac-cases", fhir=False,
                          body={"patient": {"system": f.INS_NIR_TEST, "value": new_nir()}, "dac": relais.org(dac)})
    assert _scrub(answer.text) == _scrub(unknown.text)
    assert not leaks(relais, answer.text, patient=patient, caller=caller)


@pytest.mark.parametrize("relation", ("own", "other", "far"))
def test_a_care_team_is_read_by_its_team_only(relais, relation):
    patient = relais.patients[relation]
    answer = relais.call("t1", "GET", patient.careteam)
    if relation == "own":
        assert answer.status_code == 200 and answer.json()["status"] == "active"
        return
    unknown = relais.call("t1", "GET", f"/admissions/fhir/CareTeam/{uuid.uuid4()}")
    assert answer.status_code == unknown.status_code == 404
    assert _scrub(answer.text) == _scrub(unknown.text)
    assert not leaks(relais, answer.text, patient=patient, caller="t1")


@pytest.mark.parametrize("role", ("c1", "d1", "h1"))
def test_roles_outside_the_registry_cannot_enrol_or_read_care_teams(relais, role):
    patient = relais.patients["own"]
    assert relais.call(role, "GET", patient.careteam).status_code == 403
    assert relais.enrol(role, new_nir()).status_code == 403


@pytest.mark.parametrize("role", ("c1", "d1"))
def test_the_cpts_and_the_dac_record_no_consent_and_open_no_case(relais, role):
    patient = relais.patients["own"]
    consent = relais.call(role, "POST", "/admissions/fhir/Consent", body=f.consent_resource(nir=patient.nir))
    referral = relais.call(role, "POST", "/admissions/dac-cases", fhir=False,
                           body={"patient": identifier(patient), "dac": relais.org("d1")})
    assert (consent.status_code, referral.status_code) == (403, 403)


@pytest.mark.parametrize("relation", ("other", "unknown", "far"))
def test_enrolling_answers_the_same_whoever_treats_the_patient(relais, relation):
    patient = relais.patients[relation] if relation != "unknown" else Patient(new_nir(), "75014")
    answer = relais.enrol("t1", patient.nir)
    assert answer.status_code == 202, answer.text
    assert _scrub(answer.text) == _scrub(relais.enrol("t1", new_nir()).text)
    assert not leaks(relais, answer.text + json.dumps(dict(answer.headers)), patient=patient, caller="t1")
    listing = relais.call("t1", "GET", "/admissions/team-changes").text
    assert relais.org("t2") not in listing  # the requester never learns who treats the patient


# --- discharge: Tasks and the intake answer -----------------------------------------------------------------


def _tasks(answer) -> list[dict]:
    return [e["resource"] for e in answer.json()["entry"] if e["resource"]["resourceType"] == "Task"]


@pytest.mark.parametrize("hospital", ("h1", "h2"))
def test_a_discharge_answer_never_names_the_treating_team(relais, hospital):
    """h1 admitted the patient; h2 never did: both are answered, and neither answer names t1."""
    patient = relais.patients["own"]
    answer = relais.discharge(hospital, patient.nir)
    assert answer.status_code == 200, answer.text
    assert relais.org("t1") not in answer.text
    [handoff, *_] = _tasks(answer)
    assert "owner" not in handoff
    read = relais.call(hospital, "GET", f"/discharge/fhir/Task/{handoff['id']}")
    assert read.status_code == 200 and relais.org("t1") not in read.text  # not until t1 accepts
    assert relais.call("t1", "GET", f"/discharge/fhir/Task/{handoff['id']}").status_code == 200


@pytest.mark.parametrize("caller", ("t2", "h1", "c1", "d1"))
def test_a_task_outside_the_circle_looks_unknown(relais, caller):
    answer = relais.discharge("h2", relais.patients["other"].nir)
    [handoff, *_] = _tasks(answer)
    path = f"/discharge/fhir/Task/{handoff['id']}"
    if caller == "t2":
        assert relais.call(caller, "GET", path).status_code == 200  # t2 treats "other"
        return
    read = relais.call(caller, "GET", path)
    unknown = relais.call(caller, "GET", f"/discharge/fhir/Task/{uuid.uuid4()}")
    assert read.status_code == unknown.status_code == 404
    assert _scrub(read.text) == _scrub(unknown.text)
    assert not leaks(relais, read.text, patient=relais.patients["other"], caller=caller)


def test_another_team_cannot_act_on_a_handoff(relais):
    answer = relais.discharge("h1", relais.patients["own"].nir)
    [handoff, *_] = _tasks(answer)
    reason = {"resourceType": "Parameters", "parameter": [{"name": "reason", "valueString": "not ours"}]}
    for action, body in (("$accept", None), ("$decline", reason)):
        tried = relais.call("t2", "POST", f"/discharge/fhir/Task/{handoff['id']}/{action}", body=body)
        unknown = relais.call("t2", "POST", f"/discharge/fhir/Task/{uuid.uuid4()}/{action}", body=body)
        assert tried.status_code == unknown.status_code == 404
        assert _scrub(tried.text) == _scrub(unknown.text)


@pytest.mark.parametrize("caller", ("t1", "h1"))
def test_snp_reads_of_unknown_or_foreign_ids_look_alike(relais, caller):
    for kind in ("ServiceRequest", "Appointment"):
        answer = relais.call(caller, "GET", f"/snp/fhir/{kind}/{uuid.uuid4()}")
        assert answer.status_code in (403, 404)


# --- each attack of issue 11 item 3, kept as a regression test ---------------------------------------------


def test_regression_a_dac_cannot_open_a_case_for_any_nir(relais):
    anyone = relais.patients["other"]
    opened = relais.call("d1", "POST", "/admissions/dac-cases", fhir=False,
                         body={"patient": identifier(anyone), "dac": relais.org("d1")})
    assert opened.status_code == 403
    # …nor get one through a team or hospital outside the patient's circle.
    relayed = relais.call("t1", "POST", "/admissions/dac-cases", fhir=False,
                          body={"patient": identifier(anyone), "dac": relais.org("d1")})
    assert relayed.status_code == 404


def test_regression_an_unrelated_team_cannot_turn_an_opposition_into_a_permit(relais):
    patient = Patient(new_nir(), "75014")
    assert relais.enrol("t2", patient.nir, "75014").status_code == 202
    assert relais.call("t2", "POST", "/admissions/fhir/Consent",
                       body=f.consent_resource(nir=patient.nir, opposed=True)).status_code == 201
    permit = f.consent_resource(nir=patient.nir, opposed=False)
    assert relais.call("t1", "POST", "/admissions/fhir/Consent", body=permit).status_code == 404
    hospital = relais.call("h1", "POST", "/admissions/fhir/Consent", body=permit)
    assert hospital.status_code == 404  # h1 never admitted this patient
    admissions = next(s for s in relais.services if s.name == "admissions")
    key = patient_key(f.INS_NIR_TEST, patient.nir, admissions.runtime.settings.secret_key)
    with admissions.runtime.sessions() as session:
        stored = session.get(ConsentRow, key)
        assert (stored.opposed, stored.recorded_by) == (True, relais.org("t2"))


def test_regression_a_discharge_for_a_never_admitted_patient_does_not_name_the_team(relais):
    answer = relais.discharge("h1", relais.patients["far"].nir, postal_code="13001")  # h1 never admitted "far"
    assert answer.status_code == 200, answer.text
    assert relais.org("t2") not in answer.text
    assert all("owner" not in task for task in _tasks(answer))


def test_regression_enrolling_another_teams_patient_is_no_409_naming_a_team(relais):
    patient = relais.patients["other"]
    answer = relais.enrol("t1", patient.nir)
    assert answer.status_code == 202
    assert "another team" not in answer.text and relais.org("t2") not in answer.text
    # The current team is asked; nothing changed hands silently.
    to_answer = relais.call("t2", "GET", "/admissions/team-changes").json()["to_answer"]
    assert any(c["requested_by"] == relais.org("t1") for c in to_answer)
    assert relais.call("t2", "GET", patient.careteam).json()["status"] == "active"


def _feed(relais: Relais, who: str) -> list:
    from relais.demo import FeedItem

    bundle = relais.call(who, "GET", "/notifications/feed?limit=200").json()
    return [FeedItem.parse(entry["resource"]) for entry in bundle.get("entry", [])]


def test_the_current_team_is_told_of_a_change_of_team_request_and_nobody_else_is(relais):
    from tests.infra.wait import wait_for

    nir = new_nir()
    assert relais.enrol("t2", nir, "75014").status_code == 202
    assert relais.enrol("t1", nir).status_code == 202  # t1 asks for t2's patient
    [request] = [c for c in relais.call("t2", "GET", "/admissions/team-changes").json()["to_answer"]
                 if c["subject"]["value"] == nir]

    def told() -> list:
        return [i for i in _feed(relais, "t2") if i.event == "careteam.change-requested"
                and i.subject == f"Task/{request['id']}"]

    [item] = wait_for(told, 30, 0.05, "t2's change-of-team notification")
    task = next(e["resource"] for e in item.payload["entry"] if e["resource"]["resourceType"] == "Task")
    assert (task["id"], task["for"]["identifier"]["value"]) == (request["id"], nir)
    assert task["requester"]["identifier"]["value"] == relais.org("t1")
    assert {i["valueString"] for i in task["input"]} == {f"/admissions/team-changes/{request['id']}/$accept",
                                                         f"/admissions/team-changes/{request['id']}/$decline"}
    # The asking team, the territory's CPTS and DAC hear nothing of it (t1 must not learn who treats the patient).
    for who in ("t1", "c1", "d1", "h1"):
        assert not any(i.event == "careteam.change-requested" for i in _feed(relais, who)), who
    # The same request again tells t2 nothing more.
    assert relais.enrol("t1", nir).status_code == 202
    assert len(wait_for(told, 30, 0.05, "t2's notification")) == 1
