"""Da Vinci admit and transfer notifications, Synthea transactions and HL7 v2 at the admissions door, as their
examples are shaped (tests/conformance_shapes.py), with French identifiers added."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from services.admissions.bootstrap import bootstrap
from shared.identifiers import make_finess
from shared.settings import AdmissionsSettings
from tests import conformance_shapes as shapes
from tests import factories as f

FHIR = "application/fhir+json"
OTHER = make_finess("13000001")
PROCESS = "/admissions/fhir/$process-message"


@pytest.fixture
def service(tmp_path):
    service = bootstrap(AdmissionsSettings(environment="test", data_dir=tmp_path), run_workers=False)
    d = service.runtime.directory
    service.tokens = {
        f.DEFAULT_FINESS: d.add("hospital", f.DEFAULT_FINESS, "CH Vosges"),
        OTHER: d.add("hospital", OTHER, "CH Autre"),
    }
    yield service
    service.runtime.close()


@pytest.fixture
def client(service):
    return TestClient(service.app)


def post(client, service, body, org=f.DEFAULT_FINESS, content_type=FHIR):
    headers = {"Authorization": f"Bearer {service.tokens[org]}", "Content-Type": content_type}
    return client.post(PROCESS, content=body if isinstance(body, bytes) else json.dumps(body), headers=headers)


@pytest.mark.parametrize("relayed", [False, True], ids=["direct", "intermediary"])
def test_a_davinci_admit_with_french_identifiers_is_accepted(client, service, relayed):
    response = post(client, service, shapes.davinci_message(relayed=relayed))
    assert response.status_code == 200, response.text
    assert response.json()["entry"][0]["resource"]["response"]["code"] == "ok"


def test_a_davinci_admit_without_french_identifiers_is_refused_for_want_of_a_finess(client, service):
    response = post(client, service, shapes.davinci_message(french=False))
    assert response.status_code == 422
    assert "FINESS" in response.json()["issue"][0]["diagnostics"]


def test_a_davinci_transfer_updates_the_known_admission(client, service):
    assert post(client, service, shapes.davinci_message(message_id="a-1")).status_code == 200
    transfer = shapes.davinci_message("notification-transfer", message_id="t-1")
    response = post(client, service, transfer)
    assert response.status_code == 200, response.text


def test_two_hospitals_using_the_same_bundle_id_send_two_messages(client, service):
    first = post(client, service, shapes.davinci_message(message_id="admit-notification-message-bundle-01"))
    other = shapes.davinci_message(message_id="admit-notification-message-bundle-01", finess=OTHER, nda="NDA-B")
    second = post(client, service, other, org=OTHER)
    assert (first.status_code, second.status_code) == (200, 200), second.text


def unrouted() -> float:
    labels = {"service": "admissions", "event": "admission.recorded"}
    return REGISTRY.get_sample_value("relais_messages_unrouted_total", labels) or 0.0


def test_an_admission_that_reaches_nobody_says_so(client, service):
    before = unrouted()
    response = post(client, service, shapes.davinci_message(country="US", postal_code="01844"))
    assert response.status_code == 200, response.text
    outcome = next(
        e["resource"] for e in response.json()["entry"] if e["resource"]["resourceType"] == "OperationOutcome"
    )
    assert outcome["issue"][0]["severity"] == "warning"
    assert "reached nobody" in outcome["issue"][0]["diagnostics"]
    assert unrouted() == before + 1  # what the administrator sees


def test_a_synthea_transaction_bundle_is_refused_as_not_a_message(client, service):
    response = post(client, service, shapes.synthea_transaction())
    assert response.status_code == 400
    assert response.json()["resourceType"] == "OperationOutcome"
    assert "Bundle.type 'message'" in response.json()["issue"][0]["diagnostics"]


def test_an_hl7_v2_message_has_no_door_yet_and_is_told_so(client, service):
    er7 = b"MSH|^~\\&|SGL|CHU|RELAIS|ARS|20240301080000||ADT^A01^ADT_A01|1|P|2.5|||||FRA|8859/1\r"
    response = post(client, service, er7, content_type="x-application/hl7-v2+er7")
    assert response.status_code == 415
    assert "application/fhir+json" in response.json()["issue"][0]["diagnostics"]
