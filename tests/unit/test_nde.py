"""ANS NdE over HTTP on the embedded default, through the combined app's NdE base `/nde/fhir`: declarations
routed like an admission or a discharge, per-patient Subscriptions mapped onto the care circle, notifications in
the nde-notificationrequest shape with their read status. Fixtures: tests/nde_factories.py (the project's own)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from relais.combined import combined_app, nde_target
from services.admissions.bootstrap import bootstrap as admissions_bootstrap
from services.discharge.bootstrap import bootstrap as discharge_bootstrap
from services.notifications.bootstrap import bootstrap as notifications_bootstrap
from shared.auth import Directory
from shared.events import Role
from shared.fhir.nde import NOTIFICATION_PROFILE, declaration_message
from shared.identifiers import INS_NIR_TEST, make_finess
from shared.settings import AdmissionsSettings, DischargeSettings, NotificationsSettings
from tests import factories as f
from tests import nde_factories as nde
from tests.infra.wait import wait_for

OTHER_HOSPITAL = make_finess("13000001")
SECRET = "unit-test-secret-" + "x" * 20
FHIR = "application/fhir+json"
HOOK_IN = "https://msp-x.example.org/nde/hook"
HOOK_OUT = "https://msp-y.example.org/nde/hook"
DEADLINE = 30.0


class Receiver:
    """The subscribers' rest-hook endpoints: records every POST, answers 200."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            self.requests.append((str(request.url), json.loads(request.content)))
        return httpx.Response(200)

    def bodies(self, url: str) -> list[dict[str, Any]]:
        with self.lock:
            return [body for to, body in self.requests if to == url]


@dataclass
class Relais:
    client: TestClient
    tokens: dict[str, str]
    receiver: Receiver
    services: list[Any] = field(default_factory=list)

    def headers(self, who: str, content_type: str | None = FHIR) -> dict[str, str]:
        h = {"Authorization": f"Bearer {self.tokens[who]}"}
        if content_type:
            h["Content-Type"] = content_type
        return h

    def post(self, path: str, resource: dict[str, Any] | bytes, who: str) -> httpx.Response:
        content = resource if isinstance(resource, bytes) else nde.body(resource)
        return self.client.post(path, content=content, headers=self.headers(who))

    def feed(self, who: str) -> list[dict[str, Any]]:
        bundle = self.client.get("/notifications/feed", headers=self.headers(who, None)).json()
        return [entry["resource"] for entry in bundle.get("entry", [])]


def events_of(items: list[dict[str, Any]]) -> list[str]:
    return [next(p["valueCode"] for p in item["parameter"] if p["name"] == "event") for item in items]


def until(condition: Callable[[], Any], what: str) -> Any:
    """Poll with a bounded deadline (workers relay and consume on their own threads)."""
    return wait_for(condition, DEADLINE, 0.05, what)


@contextmanager
def started(tmp_path: Path) -> Iterator[Relais]:
    directory = Directory(f"sqlite:///{tmp_path / 'auth.sqlite'}")
    tokens = {
        "hospital": directory.add(Role.HOSPITAL, f.DEFAULT_FINESS, "CH Exemple"),
        "other_hospital": directory.add(Role.HOSPITAL, OTHER_HOSPITAL, "CH Autre"),
        "team_x": directory.add(Role.TEAM, "msp-x", "MSP X"),
        "team_y": directory.add(Role.TEAM, "msp-y", "MSP Y"),
    }
    receiver = Receiver()
    common: dict[str, Any] = {
        "environment": "test", "data_dir": tmp_path, "secret_key": SECRET, "max_body_bytes": 200_000
    }
    services = [
        admissions_bootstrap(AdmissionsSettings(**common), directory=directory),
        discharge_bootstrap(DischargeSettings(**common), directory=directory),
        notifications_bootstrap(
            NotificationsSettings(**common), directory=directory, transport=httpx.MockTransport(receiver)
        ),
    ]
    with TestClient(combined_app(services)) as client:
        yield Relais(client, tokens, receiver, services)
    for service in services:
        service.runtime.close()
    directory.close()


@pytest.fixture
def relais(tmp_path) -> Iterator[Relais]:
    """A fresh Relais for a test that reads feeds or deliveries."""
    with started(tmp_path) as running:
        yield running


@pytest.fixture(scope="module")
def relais_once(tmp_path_factory) -> Iterator[Relais]:
    """One Relais for the refusals: they leave nothing behind (booting three services costs seconds)."""
    with started(tmp_path_factory.mktemp("nde")) as running:
        yield running


def enrol(relais: Relais, team: str = "team_x") -> None:
    created = relais.post("/admissions/fhir/CareTeam", f.careteam_resource(), team)
    assert created.status_code == 202, created.text
    discharge_knows_the_team(relais)


def discharge_knows_the_team(relais: Relais) -> None:
    """The care team reaches the discharge service over the bus; a discharge declared before it arrives is
    routed as a patient without a team (to the CPTS), so a test of the team's delivery waits for it."""
    from sqlalchemy import select
    from sqlmodel import col

    from services.discharge.adapters.orm import CareTeamMirrorRow

    discharge = next(s for s in relais.services if s.name == "discharge")

    def mirrored() -> bool:
        with discharge.runtime.sessions() as session:
            query = select(col(CareTeamMirrorRow.patient_key)).where(col(CareTeamMirrorRow.team_org_id).is_not(None))
            return session.execute(query).first() is not None

    until(mirrored, "the discharge service's copy of the care team")


# --- the declaration door ----------------------------------------------------------------------------------


def test_a_declared_admission_reaches_the_patients_team_like_an_admission_message(relais):
    enrol(relais)
    answer = relais.post("/nde/fhir/CommunicationRequest", nde.declaration("ADM"), "hospital")
    assert answer.status_code == 201, answer.text
    assert answer.json()["resourceType"] == "CommunicationRequest"
    assert answer.headers["location"].startswith("/nde/fhir/CommunicationRequest/")
    assert until(lambda: "admission.recorded" in events_of(relais.feed("team_x")), "the team's admission")
    assert relais.feed("team_y") == []


def test_a_declared_discharge_reaches_the_discharge_service_and_the_team(relais):
    enrol(relais)
    answer = relais.post("/nde/fhir/CommunicationRequest", nde.declaration("SOR"), "hospital")
    assert answer.status_code == 201, answer.text
    assert until(lambda: "discharge.recorded" in events_of(relais.feed("team_x")), "the team's discharge")


def test_a_repeated_declaration_is_accepted_once(relais):
    enrol(relais)
    first = relais.post("/nde/fhir/CommunicationRequest", nde.declaration("ADM"), "hospital")
    again = relais.post("/nde/fhir/CommunicationRequest", nde.declaration("ADM"), "hospital")
    assert (first.status_code, again.status_code) == (201, 201)
    assert first.json()["id"] == again.json()["id"]
    until(lambda: "admission.recorded" in events_of(relais.feed("team_x")), "the team's admission")
    changed = nde.declaration("ADM", event_time="2026-11-29T11:00:00+01:00")
    assert relais.post("/nde/fhir/CommunicationRequest", changed, "hospital").status_code == 409
    assert events_of(relais.feed("team_x")).count("admission.recorded") == 1


def test_each_service_serves_its_own_event_and_names_the_other_door(relais_once):
    wrong = relais_once.post("/admissions/nde/fhir/CommunicationRequest", nde.declaration("SOR"), "hospital")
    assert wrong.status_code == 422 and "/discharge/nde/fhir/CommunicationRequest" in wrong.text
    wrong = relais_once.post("/discharge/nde/fhir/CommunicationRequest", nde.declaration("ADM"), "hospital")
    assert wrong.status_code == 422 and "/admissions/nde/fhir/CommunicationRequest" in wrong.text


@pytest.mark.parametrize(
    ("change", "status", "where"),
    [
        (lambda r: r.update(extension=r["extension"][1:]), 422, "EventType"),
        (lambda r: r["extension"][0]["valueCodeableConcept"]["coding"][0].update(code="DEC"), 422, "EventType"),
        (lambda r: r.update(extension=r["extension"][:1]), 422, "EventTime"),
        (lambda r: r["extension"][1].update(valueDateTime="2026-11-29"), 422, "EventTime"),
        (lambda r: r.update(subject={"reference": "Patient/elsewhere"}), 422, "subject"),
        (lambda r: r["contained"][0].pop("identifier"), 422, "CommunicationRequest.contained(Patient).identifier"),
        (lambda r: r["contained"][1].pop("identifier"), 422, "CommunicationRequest.requester"),
        (lambda r: r["contained"][0]["identifier"][0].update(value="279035121518980"), 422, "NIR key is wrong"),
        (lambda r: r.update(meta={"profile": [NOTIFICATION_PROFILE]}), 422, "meta.profile"),
        (lambda r: r.update(resourceType="Communication"), 400, "resourceType"),
        (lambda r: r.update(status="bogus"), 400, "status"),
    ],
    ids=["no event type", "event type not acted on", "no event time",
         "event time without a time", "subject not contained", "no identifier",
         "declarant without FINESS", "a notification request, not a declaration",
         "INS with a wrong key", "not a CommunicationRequest", "invalid status"],
)
def test_a_declaration_relais_cannot_act_on_is_refused_with_an_operation_outcome(relais_once, change, status, where):
    resource = nde.declaration("ADM")
    change(resource)
    answer = relais_once.post("/nde/fhir/CommunicationRequest", resource, "hospital")
    assert answer.status_code == status, answer.text
    outcome = answer.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert where in json.dumps(outcome)


def test_a_declaration_reads_into_the_facts_of_the_equivalent_encounter_message():
    from services.admissions.intake import admission_command
    from services.discharge.intake import discharge_command

    admitted = declaration_message(nde.body(nde.declaration("ADM")), FHIR, 200_000)
    facts = admission_command(admitted.message, f.DEFAULT_FINESS).facts
    assert (facts.hospital_org_id, facts.patient.system, facts.patient.value) == (
        f.DEFAULT_FINESS, INS_NIR_TEST, f.DEFAULT_NIR
    )
    assert (facts.encounter_key, facts.postal_code) == ("https://dpi.ch-exemple.fr/nda|NDA-4242", "88000")
    assert facts.started_at.startswith("2026-11-29T10:00:00")
    discharged = declaration_message(nde.body(nde.declaration("SOR", declaration_id="d2")), FHIR, 200_000)
    out = discharge_command(discharged.message, f.DEFAULT_FINESS).facts
    assert out.encounter_key == facts.encounter_key  # the stay's key, shared by its ADM and SOR declarations
    assert out.discharged_at.isoformat() == "2026-11-29T10:00:00+01:00"
    assert out.referent.name is None and out.referent.phone is None  # never refused for want of a referent
    assert admitted.message.message_id != discharged.message.message_id


def test_a_patient_known_by_a_local_identifier_only_is_accepted_as_local(relais_once):
    resource = nde.declaration("ADM", nir=None, local=("https://dpi.ch-exemple.fr/ipp", "IPP-7"))
    declaration = declaration_message(nde.body(resource), FHIR, 200_000)
    from services.admissions.intake import admission_command

    facts = admission_command(declaration.message, f.DEFAULT_FINESS).facts
    assert facts.patient.local_only and facts.patient.value == "IPP-7"
    assert relais_once.post("/nde/fhir/CommunicationRequest", resource, "hospital").status_code == 201


def test_the_combined_dispatcher_routes_by_event_type():
    sor, adm = nde.body(nde.declaration("SOR")), nde.body(nde.declaration("ADM"))
    assert nde_target("POST", "/nde/fhir/CommunicationRequest", sor) == "/discharge/nde/fhir/CommunicationRequest"
    assert nde_target("POST", "/nde/fhir/CommunicationRequest", adm) == "/admissions/nde/fhir/CommunicationRequest"
    assert nde_target("POST", "/nde/fhir/CommunicationRequest", b"{not json") == (
        "/admissions/nde/fhir/CommunicationRequest"
    )
    assert nde_target("POST", "/nde/fhir/Subscription", b"{}") == "/notifications/nde/fhir/Subscription"
    assert nde_target("GET", "/nde/fhir/metadata", b"") == "/nde/fhir/metadata"


def test_the_nde_base_announces_its_interactions(relais_once):
    statement = relais_once.client.get("/nde/fhir/metadata").json()
    assert statement["resourceType"] == "CapabilityStatement"
    assert {r["type"] for r in statement["rest"][0]["resource"]} == {"CommunicationRequest", "Subscription"}


# --- Subscriptions and notifications -----------------------------------------------------------------------


def test_an_email_subscription_is_refused_with_a_clear_reason(relais_once):
    answer = relais_once.post("/nde/fhir/Subscription", nde.subscription(channel="email"), "team_x")
    assert answer.status_code == 422, answer.text
    issue = answer.json()["issue"][0]
    assert issue["expression"] == ["Subscription.channel.type"]
    assert "rest-hook" in issue["diagnostics"]


def test_a_subscriber_in_the_care_circle_receives_an_nde_notification_request_with_its_read_status(relais):
    enrol(relais)
    created = relais.post("/nde/fhir/Subscription", nde.subscription("SOR", endpoint=HOOK_IN), "team_x")
    assert created.status_code == 201, created.text
    subscription = created.json()
    assert subscription["status"] == "active"
    assert relais.client.get(created.headers["location"], headers=relais.headers("team_x", None)).status_code == 200
    relais.post("/nde/fhir/CommunicationRequest", nde.declaration("ADM"), "hospital")
    relais.post("/nde/fhir/CommunicationRequest", nde.declaration("SOR", declaration_id="decl-2"), "hospital")
    [delivered] = until(lambda: relais.receiver.bodies(HOOK_IN), "the subscriber's notification")
    assert delivered["resourceType"] == "CommunicationRequest"
    assert delivered["meta"]["profile"] == [NOTIFICATION_PROFILE]
    assert delivered["basedOn"][0]["reference"].endswith(f"/nde/fhir/Subscription/{subscription['id']}")
    codes = [c["code"] for e in delivered["extension"] if "valueCodeableConcept" in e
             for c in e["valueCodeableConcept"]["coding"]]
    assert codes == ["SOR"]  # the ADM declaration is not what this subscription asked for
    assert delivered["status"] == "active"
    path = f"/nde/fhir/CommunicationRequest/{delivered['id']}"
    assert relais.client.get(path, headers=relais.headers("team_x", None)).json()["status"] == "active"
    acked = relais.client.post(f"{path}/$ack", headers=relais.headers("team_x", None))
    assert acked.status_code == 200 and acked.json()["status"] == "completed"
    assert relais.client.get(path, headers=relais.headers("team_x", None)).json()["status"] == "completed"
    assert relais.client.get(path, headers=relais.headers("team_y", None)).status_code == 404


def test_a_subscriber_outside_the_care_circle_is_answered_alike_and_receives_nothing(relais):
    enrol(relais, "team_x")
    inside = relais.post("/nde/fhir/Subscription", nde.subscription("SOR", endpoint=HOOK_IN), "team_x")
    outside = relais.post("/nde/fhir/Subscription", nde.subscription("SOR", endpoint=HOOK_OUT), "team_y")
    assert (inside.status_code, outside.status_code) == (201, 201)
    assert {k for k in inside.json()} == {k for k in outside.json()}
    assert inside.json()["status"] == outside.json()["status"]
    relais.post("/nde/fhir/CommunicationRequest", nde.declaration("SOR"), "hospital")
    until(lambda: relais.receiver.bodies(HOOK_IN), "the team's notification")  # the event has been fanned out
    assert relais.receiver.bodies(HOOK_OUT) == []
    assert relais.feed("team_y") == []


def test_another_organisations_subscription_is_a_404_like_an_unknown_one(relais_once):
    created = relais_once.post("/nde/fhir/Subscription", nde.subscription(endpoint=HOOK_IN), "team_x").json()
    stranger = relais_once.headers("team_y", None)
    foreign = relais_once.client.get(f"/nde/fhir/Subscription/{created['id']}", headers=stranger)
    unknown = relais_once.client.get("/nde/fhir/Subscription/nope", headers=stranger)
    assert (foreign.status_code, unknown.status_code) == (404, 404)
    assert foreign.json()["issue"][0]["code"] == unknown.json()["issue"][0]["code"]


# --- what an attacker would try ----------------------------------------------------------------------------


def test_a_declaration_for_another_hospitals_finess_is_forbidden(relais_once):
    answer = relais_once.post("/nde/fhir/CommunicationRequest", nde.declaration("ADM"), "other_hospital")
    assert answer.status_code == 403, answer.text
    assert answer.json()["resourceType"] == "OperationOutcome"


def test_a_team_cannot_declare_events(relais_once):
    assert relais_once.post("/nde/fhir/CommunicationRequest", nde.declaration("ADM"), "team_x").status_code == 403


def test_a_subscriber_naming_another_organisation_is_forbidden(relais_once):
    other = {"resourceType": "Organization", "id": "subscriber", "identifier": [{"value": "msp-x"}]}
    answer = relais_once.post("/nde/fhir/Subscription", nde.subscription(subscriber=other, endpoint=HOOK_OUT), "team_y")
    assert answer.status_code == 403, answer.text
    mine = {"resourceType": "Organization", "id": "subscriber", "identifier": [{"value": "msp-y"}]}
    answer = relais_once.post("/nde/fhir/Subscription", nde.subscription(subscriber=mine, endpoint=HOOK_OUT), "team_y")
    assert answer.status_code == 201, answer.text


def test_huge_and_deep_declarations_are_refused_before_any_work(relais_once):
    resource = nde.declaration("ADM")
    resource["payload"][0]["contentAttachment"]["data"] = "QUFB" * 100_000
    assert relais_once.post("/nde/fhir/CommunicationRequest", resource, "hospital").status_code == 413
    deep = '{"extension":[' * 5000 + "{}" + "]}" * 5000  # too deep for the encoder: written as text
    body = nde.body(nde.declaration("ADM"))[:-1] + b', "modifierExtension": [' + deep.encode() + b"]}"
    answer = relais_once.post("/nde/fhir/CommunicationRequest", body, "hospital")
    assert answer.status_code in (400, 422), answer.text
    assert answer.json()["resourceType"] == "OperationOutcome"
