"""Issue 19 item 2: the CPTS (which only sees minimised patients) names a patient by NIR in an NdE per-patient
Subscription. Its answer looks like the treating team's, and nothing it is ever sent or can read (rest-hook
delivery, `CommunicationRequest/{id}` with its `basedOn`, the delivery list) ties that NIR to the pseudonymous
key of the minimised notices it receives; the team, a full-detail member of the care circle, is matched.
On SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from services.notifications.bootstrap import bootstrap
from services.notifications.fhir.nde import parse_nde_subscription
from shared.auth import Directory
from shared.outbound import OutboundPolicy
from shared.service import Service
from shared.settings import NotificationsSettings
from tests import nde_factories as nde
from tests.unit.test_notifications_service import publish

pytestmark = pytest.mark.attack

FHIR = "application/fhir+json"
SECRET = "reidentify-test-secret-" + "x" * 20
CPTS_HOOK = "https://cpts.example.org/nde/hook"
TEAM_HOOK = "https://msp.example.org/nde/hook"


@pytest.fixture(params=["sqlite", "postgres"])
def database(request) -> str | None:
    return None if request.param == "sqlite" else request.getfixturevalue("postgres_url")


class Receiver:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            self.sent.append((str(request.url), json.loads(request.content)))
        return httpx.Response(200)

    def to(self, url: str) -> list[dict[str, Any]]:
        with self.lock:
            return [body for target, body in self.sent if target == url]


@pytest.fixture
def notifications(database, tmp_path) -> Iterator[tuple[Service, TestClient, Directory, Receiver]]:
    schema = {"database_url": database, "database_schema": "notifications"} if database else {}
    settings = NotificationsSettings(environment="test", data_dir=tmp_path, secret_key=SECRET, **schema)
    directory = Directory(f"sqlite:///{tmp_path / 'auth.sqlite'}")
    receiver = Receiver()
    service = bootstrap(settings, directory=directory, run_workers=False, transport=httpx.MockTransport(receiver))
    try:
        with TestClient(service.app) as client:
            yield service, client, directory, receiver
    finally:
        service.runtime.close()
        directory.close()


def test_a_cpts_subscription_by_nir_never_links_it_to_a_minimised_patient(notifications):
    service, client, directory, receiver = notifications
    cpts = {"Authorization": f"Bearer {directory.add('cpts', 'cpts-1', 'CPTS')}", "Content-Type": FHIR}
    team = {"Authorization": f"Bearer {directory.add('team', 'msp-1', 'MSP')}", "Content-Type": FHIR}
    by_cpts = nde.subscription("ADM", endpoint=CPTS_HOOK, declarant_finess=None)
    by_team = nde.subscription("ADM", endpoint=TEAM_HOOK, declarant_finess=None)
    cpts_answer = client.post("/notifications/nde/fhir/Subscription", json=by_cpts, headers=cpts)
    team_answer = client.post("/notifications/nde/fhir/Subscription", json=by_team, headers=team)
    assert (cpts_answer.status_code, team_answer.status_code) == (201, 201)
    assert cpts_answer.json().keys() == team_answer.json().keys()
    assert cpts_answer.json()["status"] == team_answer.json()["status"] == "active"

    # The patient the NIR names reaches the CPTS minimised and its team in full.
    key = parse_nde_subscription(by_cpts, OutboundPolicy(), SECRET, "cpts-1").filters[0]["patient"]
    [minimised] = publish(service, "cpts-1", topic="relais.notify.cpts", detail="minimised",
                          event="admission.recorded", patient_key=key)
    [full] = publish(service, "msp-1", event="admission.recorded", patient_key=key)
    service.app.state.dispatcher.run_due()

    assert receiver.to(CPTS_HOOK) == []  # no rest-hook delivery names the minimised notice
    [delivered] = receiver.to(TEAM_HOOK)
    assert delivered["id"] == full
    assert delivered["basedOn"][0]["reference"].endswith(f"/Subscription/{team_answer.json()['id']}")

    # Reading the minimised notice as an NdE CommunicationRequest is a 404 like an unknown id.
    read = client.get(f"/notifications/nde/fhir/CommunicationRequest/{minimised}", headers=cpts)
    unknown = client.get("/notifications/nde/fhir/CommunicationRequest/no-such-notification", headers=cpts)
    assert (read.status_code, unknown.status_code) == (404, 404)
    assert read.json()["issue"][0]["code"] == unknown.json()["issue"][0]["code"]
    ack = client.post(f"/notifications/nde/fhir/CommunicationRequest/{minimised}/$ack", headers=cpts)
    assert ack.status_code == 404
    # The subscription's delivery list is empty, like one that matches nothing.
    subscription_id = cpts_answer.json()["id"]
    listed = client.get(f"/notifications/webhooks/deliveries?target={subscription_id}", headers=cpts)
    assert listed.status_code == 200 and listed.json() == []
    again = client.get(f"/notifications/nde/fhir/Subscription/{subscription_id}", headers=cpts).json()
    assert again.keys() == cpts_answer.json().keys()  # no counter or status moved by the minimised notice
    assert json.dumps(again, sort_keys=True) == json.dumps(cpts_answer.json(), sort_keys=True)
