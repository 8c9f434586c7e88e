"""The kernel's HTTP surface: errors as OperationOutcome with the right status, nothing stored on bad input."""

from __future__ import annotations

import json

import pytest
from fastapi import APIRouter, Depends, Request
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlmodel import SQLModel

from shared.api.app import create_service_app
from shared.auth import Directory, Principal, require_role
from shared.db.engine import make_engine, session_factory
from shared.db.tables import KERNEL_TABLES, OutboxMessage
from shared.db.uow import UnitOfWork
from shared.events import Role
from shared.fhir.intake import parse_message_bundle
from shared.identifiers import validate_identifier
from tests import factories

MAX_BYTES = 20_000
# The same NIR with its two-digit key off by one.
WRONG_KEY_NIR = factories.DEFAULT_NIR[:-2] + f"{(int(factories.DEFAULT_NIR[-2:]) % 97) + 1:02d}"


@pytest.fixture
def kernel_app(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'svc.sqlite'}")
    SQLModel.metadata.create_all(engine, tables=list(KERNEL_TABLES))
    sessions = session_factory(engine)
    directory = Directory(f"sqlite:///{tmp_path / 'auth.sqlite'}")
    router = APIRouter(prefix="/kernel")

    @router.post("/fhir/$process-message")
    async def process(request: Request, principal: Principal = Depends(require_role(Role.HOSPITAL))):
        message = parse_message_bundle(await request.body(), request.headers.get("content-type"), MAX_BYTES)
        for patient in message.all("Patient"):
            for identifier in patient.identifier or []:
                validate_identifier(identifier.system, identifier.value)
        with UnitOfWork(sessions, "kernel") as uow:
            data = {"id": message.message_id}
            uow.outbox.add("relais.test", principal.organisation_id, message.event_type.value, data)
            uow.commit()
        return {"accepted": message.message_id}

    app = create_service_app(
        service="kernel",
        title="kernel",
        description="test",
        routers=[router],
        max_body_bytes=MAX_BYTES,
        ready_checks={"database": lambda: True},
        capability={"resourceType": "CapabilityStatement"},
    )
    app.state.directory = directory
    token = directory.add(Role.HOSPITAL, factories.DEFAULT_FINESS, "CHU Exemple")
    team_token = directory.add(Role.TEAM, "team-1", "MSP")
    client = TestClient(app)
    client.headers["Authorization"] = f"Bearer {token}"

    def stored() -> int:
        with sessions() as session:
            return session.scalar(select(func.count()).select_from(OutboxMessage))

    yield client, stored, team_token
    engine.dispose()
    directory.close()


FHIR_JSON = {"Content-Type": "application/fhir+json"}


def post(client: TestClient, content: bytes, headers: dict | None = None):
    return client.post("/kernel/fhir/$process-message", content=content, headers=headers or FHIR_JSON)


def assert_outcome(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/fhir+json")
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["severity"] in {"error", "fatal"}
    if code:
        assert body["issue"][0]["code"] == code
    return body


def test_a_valid_message_is_accepted_and_stored(kernel_app):
    client, stored, _ = kernel_app
    response = post(client, factories.body(factories.admission_message()))
    assert response.status_code == 200, response.text
    assert stored() == 1


@pytest.mark.parametrize(
    ("name", "content", "headers", "status"),
    [
        ("invalid JSON", b"{not json", FHIR_JSON, 400),
        ("wrong resource type", json.dumps({"resourceType": "Patient", "id": "p"}).encode(), FHIR_JSON, 400),
        ("bundle not a message", json.dumps({"resourceType": "Bundle", "id": "b", "type": "collection"}).encode(),
         FHIR_JSON, 400),
        ("message header missing", json.dumps({"resourceType": "Bundle", "id": "b", "type": "message",
                                               "entry": []}).encode(), FHIR_JSON, 400),
        ("wrong content type", factories.body(factories.admission_message()), {"Content-Type": "text/plain"}, 415),
        ("oversized body", b"{" + b" " * (MAX_BYTES + 10) + b"}", FHIR_JSON, 413),
        ("INS with a wrong key", factories.body(factories.admission_message(nir=WRONG_KEY_NIR)),
         FHIR_JSON, 422),
    ],
)
def test_bad_input_gets_an_operation_outcome_and_nothing_is_stored(kernel_app, name, content, headers, status):
    client, stored, _ = kernel_app
    assert_outcome(post(client, content, headers), status)
    assert stored() == 0, name


def test_an_oversized_chunked_body_is_refused_while_streaming(kernel_app):
    client, stored, _ = kernel_app

    def chunks():
        for _ in range(30):
            yield b" " * 1000

    assert_outcome(post(client, chunks()), 413)
    assert stored() == 0


def test_missing_token_is_401_and_wrong_role_is_403(kernel_app):
    client, stored, team_token = kernel_app
    content = factories.body(factories.admission_message())
    assert_outcome(client.post("/kernel/fhir/$process-message", content=content,
                               headers={**FHIR_JSON, "Authorization": ""}), 401, "login")
    assert_outcome(client.post("/kernel/fhir/$process-message", content=content,
                               headers={**FHIR_JSON, "Authorization": "Bearer rls_forged"}), 401, "login")
    assert_outcome(client.post("/kernel/fhir/$process-message", content=content,
                               headers={**FHIR_JSON, "Authorization": f"Bearer {team_token}"}), 403, "forbidden")
    assert stored() == 0


def test_unknown_path_is_a_404_operation_outcome(kernel_app):
    client, _, _ = kernel_app
    assert_outcome(client.get("/kernel/nothing-here"), 404, "not-found")


def test_operations_endpoints_answer(kernel_app):
    client, _, _ = kernel_app
    assert client.get("/kernel/healthz").json()["status"] == "ok"
    assert client.get("/kernel/readyz").status_code == 200
    assert client.get("/kernel/metadata").json()["resourceType"] == "CapabilityStatement"
    metrics = client.get("/kernel/metrics")
    assert "relais_http_requests_total" in metrics.text


def test_readiness_needs_the_database_and_only_reports_the_bus():
    def app_with(database: bool, bus: bool) -> TestClient:
        return TestClient(
            create_service_app(
                service="kernel", title="k", description="k", routers=[], max_body_bytes=1000,
                ready_checks={"database": lambda: database}, degraded_checks={"bus": lambda: bus},
                capability={"resourceType": "CapabilityStatement"},
            )
        )

    down_bus = app_with(database=True, bus=False).get("/kernel/readyz")
    assert down_bus.status_code == 200 and down_bus.json() == {
        "status": "degraded", "checks": {"database": True, "bus": False}
    }
    down_db = app_with(database=False, bus=True).get("/kernel/readyz")
    assert down_db.status_code == 503 and down_db.json()["status"] == "unavailable"
