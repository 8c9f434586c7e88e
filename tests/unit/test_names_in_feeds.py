"""Feeds and webhook bodies name organisations beside their ids; a minimised recipient never gets a patient's name."""

from __future__ import annotations

import json
import threading
from datetime import UTC, date, datetime

import httpx
import pytest
from fastapi.testclient import TestClient

from services.notifications.bootstrap import bootstrap
from services.notifications.entrypoints.consumers import notification_handlers
from shared.bus.envelope import Envelope
from shared.contracts import About, build_notification
from shared.directory.importer import import_directory
from shared.directory.lookup import DirectoryLookup
from shared.events import TOPIC_NOTIFY_CPTS, TOPIC_NOTIFY_TEAM, EventType, Role
from shared.routing import Detail, Recipient
from shared.settings import NotificationsSettings
from tests.directory_factories import hospital, write_finess
from tests.factories import admission_message

CHU = hospital("88000123", "CENTRE HOSPITALIER ÉMILE DURKHEIM")
HOOK = "http://127.0.0.1:9/hook"


@pytest.fixture
def service(tmp_path):
    requests: list[httpx.Request] = []

    def receive(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(200)

    settings = NotificationsSettings(
        environment="test", data_dir=tmp_path, outbound_allowed_networks=["127.0.0.0/8"], outbound_allow_http=True
    )
    service = bootstrap(settings, run_workers=False, transport=httpx.MockTransport(receive))
    directory = service.runtime.directory
    import_directory(directory.engine, finess=write_finess(tmp_path / "finess.csv", [CHU]))
    service.tokens = {
        "team": directory.add("team", "msp-lilas", "MSP des Lilas"),
        "cpts": directory.add("cpts", "cpts-epinal", "CPTS d'Épinal"),
    }
    service.requests = requests
    service.client = TestClient(service.app)
    yield service
    service.runtime.close()


def deliver(service, recipient: Recipient) -> None:
    """An admission, built by the kernel's one notification builder for this recipient, consumed by the service."""
    about = About(patient_key="k" * 32, reference="Admission/a1", subject="NDA-1", commune="88160",
                  birth_date=date(1955, 3, 14))  # fmt: skip
    out = build_notification(
        recipient,
        EventType.ADMISSION_RECORDED,
        source_id="a1",
        about=about,
        sender=CHU.finess,
        occurred_at=datetime(2026, 12, 1, 8, tzinfo=UTC),
        recorded_at=datetime(2026, 12, 1, 8, 1, tzinfo=UTC),
        full=lambda _id: admission_message(),
    )
    envelope = Envelope(id=out.message_id, type=out.type, key=out.key, source="admissions", data=out.data)
    notification_handlers(service.app.state.messagebus, threading.Event())[out.topic](envelope)


def parameters(resource: dict) -> dict:
    return {p["name"]: p for p in resource["parameter"]}


def test_the_directory_names_registered_and_imported_organisations(service):
    lookup = DirectoryLookup(service.runtime.directory.engine)
    names = lookup.names([CHU.finess, "msp-lilas", "unknown", ""])
    assert names == {CHU.finess: CHU.name, "msp-lilas": "MSP des Lilas"}


def test_a_feed_and_a_webhook_body_name_the_sender_and_the_recipient(service):
    headers = {"Authorization": f"Bearer {service.tokens['team']}"}
    created = service.client.post("/notifications/webhooks", json={"url": HOOK, "secret": "s" * 32}, headers=headers)
    assert created.status_code == 201
    deliver(service, Recipient(Role.TEAM, "msp-lilas", Detail.FULL, TOPIC_NOTIFY_TEAM, "team"))

    feed = service.client.get("/notifications/feed", headers=headers)
    assert "MARTIN" in feed.text  # the care team gets the patient's name (full detail)
    entry = feed.json()["entry"][0]["resource"]
    service.app.state.dispatcher.run_due()
    hooked = json.loads(service.requests[0].content)["entry"][0]["resource"]

    for resource in (entry, hooked):
        found = parameters(resource)
        assert found["sender"]["valueIdentifier"]["value"] == CHU.finess  # the id stays, the name is beside it
        assert found["sender-name"]["valueString"] == CHU.name
        assert found["recipient-name"]["valueString"] == "MSP des Lilas"


@pytest.mark.attack
def test_a_minimised_recipient_gets_organisation_names_and_never_a_patients(service):
    deliver(service, Recipient(Role.CPTS, "cpts-epinal", Detail.MINIMISED, TOPIC_NOTIFY_CPTS, "no team"))

    answer = service.client.get("/notifications/feed", headers={"Authorization": f"Bearer {service.tokens['cpts']}"})

    found = parameters(answer.json()["entry"][0]["resource"])
    assert found["sender-name"]["valueString"] == CHU.name
    for patient_datum in ("MARTIN", "Jeanne", "1955-03-14", "NDA-1"):
        assert patient_datum not in answer.text
