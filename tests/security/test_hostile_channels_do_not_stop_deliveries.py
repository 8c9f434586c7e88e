"""Issue 19 item 1: one organisation must not stop every organisation's deliveries. Team B tries every spelling
of a loopback address and reserved channel headers (refused at registration), finds rows stored before the
checks existed, and a delivery whose instance was killed mid-attempt holds a stale lease; team A's webhook is
still delivered, the stale lease is taken again, and a dispatcher that keeps failing makes /readyz say 503.
On SQLite and on PostgreSQL (a naive time read back from SQLite once broke every claim)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text
from sqlmodel import col

from services.notifications.adapters.orm import DeliveryRow, SubscriptionRow, WebhookRow
from services.notifications.bootstrap import bootstrap
from services.notifications.entrypoints.worker import DeliveryWorker
from shared.auth import Directory
from shared.service import Service
from shared.settings import NotificationsSettings
from tests import nde_factories as nde
from tests.infra.wait import wait_for
from tests.unit.test_notifications_service import publish, subscription

pytestmark = pytest.mark.attack

FHIR = "application/fhir+json"
LOOPBACK = {"outbound_allowed_networks": ["127.0.0.0/8"], "outbound_allow_http": True}
# Every other way to write 127.0.0.1 (the policy allows loopback here, so only normalising can refuse them).
SPELLINGS = ["0177.0.0.1", "127.000.000.001", "2130706433", "0x7f000001", "0x7f.1", "127.1", "017700000001",
             "[::127.0.0.1]", "[::7f00:1]", "[::ffff:127.0.0.1]", "[::ffff:7f00:1]", "[::ffff:0:7f00:1]",
             "[64:ff9b::7f00:1]", "[2002:7f00:1::]", "127.0.0.1."]
RESERVED = ["Host: x", "Content-Length: 0", "Transfer-Encoding: chunked", "Relais-Signature: t=1,v1=x",
            "relais-delivery-id: 1", "Bad Name: v", "X-Ok: a\r\nHost: evil"]


@pytest.fixture(params=["sqlite", "postgres"])
def database(request) -> str | None:
    return None if request.param == "sqlite" else request.getfixturevalue("postgres_url")


class Receiver:
    """A loopback webhook endpoint that records the paths it was POSTed to and answers 200."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.paths.append(self.path)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_port
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def running(database: str | None, tmp_path, **extra: Any) -> Iterator[tuple[Service, TestClient, Directory]]:
    schema = {"database_url": database, "database_schema": "notifications"} if database else {}
    settings = NotificationsSettings(environment="test", data_dir=tmp_path, dispatcher_idle_seconds=0.05,
                                     webhook_timeout_seconds=0.5, webhook_lease_seconds=0.5, **LOOPBACK,
                                     **schema, **extra)
    directory = Directory(f"sqlite:///{tmp_path / 'auth.sqlite'}")
    service = bootstrap(settings, directory=directory, run_workers=False)
    try:
        with TestClient(service.app) as client:
            yield service, client, directory
    finally:
        service.runtime.close()
        directory.close()


@contextmanager
def dispatching(service: Service) -> Iterator[DeliveryWorker]:
    """The service's own dispatcher loop on its thread, as `relais run` starts it."""
    dispatcher: DeliveryWorker = service.app.state.dispatcher
    stop = threading.Event()
    thread = threading.Thread(target=dispatcher.run, args=(stop,), daemon=True)
    thread.start()
    try:
        yield dispatcher
    finally:
        stop.set()
        thread.join(timeout=30)


def headers(directory: Directory, org: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {directory.add('team', org, org)}", "Content-Type": FHIR}


def _store_rows_of_yesterday(service: Service, port: int) -> None:
    """Rows the earlier registration let through: a webhook with an octal host, a Subscription sending Host."""
    now = datetime.now(UTC)
    with service.runtime.sessions() as session:
        session.add(WebhookRow(id=str(uuid.uuid4()), org_id="msp-b", url=f"http://0177.0.0.1:{port}/octal",
                               secret="s" * 20, active=True, created_at=now))
        session.add(SubscriptionRow(
            id=str(uuid.uuid4()), org_id="msp-b", topic="https://relais.example.org/fhir/SubscriptionTopic/discharge",
            filters=[], endpoint=f"http://127.0.0.1:{port}/host-header", headers=["Host: x"], content="id-only",
            heartbeat_seconds=None, status="active", events_since_start=0, resource=subscription(),
            created_at=now, last_sent_at=now,
        ))
        session.commit()


def _deliveries(service: Service, org: str) -> list[DeliveryRow]:
    with service.runtime.sessions() as session:
        rows = list(session.execute(select(DeliveryRow).where(col(DeliveryRow.org_id) == org)).scalars())
        session.expunge_all()
        return rows


def test_every_spelling_of_an_inward_address_and_every_reserved_header_is_refused_at_registration(
    database, tmp_path
):
    with running(database, tmp_path) as (_service, client, directory), Receiver() as target:
        team_b = headers(directory, "msp-b")
        for host in SPELLINGS:
            url = f"http://{host}:{target.port}/hook"
            webhook = client.post("/notifications/webhooks", json={"url": url}, headers=team_b)
            backport = client.post("/notifications/fhir/Subscription", json=_backport(url), headers=team_b)
            per_patient = client.post("/notifications/nde/fhir/Subscription", json=_nde(url), headers=team_b)
            for answer in (webhook, backport, per_patient):
                assert answer.status_code == 422, (host, answer.text)
                assert answer.json()["resourceType"] == "OperationOutcome"
                assert host.strip("[]") not in answer.text  # the refusal never echoes the target
        for header in RESERVED:
            answer = client.post("/notifications/nde/fhir/Subscription",
                                 json=_nde(f"{target.url}/nde", [header]), headers=team_b)
            assert answer.status_code == 422, (header, answer.text)
        assert client.get("/notifications/webhooks", headers=team_b).json() == []
        assert client.get("/notifications/fhir/Subscription", headers=team_b).json().get("total") == 0
    assert target.paths == []


def test_hostile_rows_and_a_stale_lease_never_stop_another_teams_webhook(database, tmp_path):
    with running(database, tmp_path) as (service, client, directory), Receiver() as team_a, Receiver() as team_b:
        assert client.post("/notifications/webhooks", json={"url": f"{team_a.url}/a"},
                           headers=headers(directory, "msp-a")).status_code == 201
        team_b_headers = headers(directory, "msp-b")
        assert client.post("/notifications/webhooks", json={"url": f"{team_b.url}/b"},
                           headers=team_b_headers).status_code == 201
        for host in ("0177.0.0.1", "127.000.000.001", "2130706433", "[::127.0.0.1]"):
            hostile = client.post("/notifications/webhooks", json={"url": f"http://{host}:{team_b.port}/x"},
                                  headers=team_b_headers)
            assert hostile.status_code == 422, hostile.text
        hostile = client.post("/notifications/nde/fhir/Subscription",
                              json=_nde(f"{team_b.url}/nde", ["Host: x"]), headers=team_b_headers)
        assert hostile.status_code == 422, hostile.text
        _store_rows_of_yesterday(service, team_b.port)
        publish(service, "msp-b")
        # An instance killed with kill -9 right after taking the leases: nothing is ever recorded for them.
        killed = DeliveryWorker(service.app.state.messagebus, service.app.state.dispatcher._sender, threading.Event())
        assert len(killed.claim(10)) == 3
        publish(service, "msp-a")
        with dispatching(service) as dispatcher:
            wait_for(lambda: team_a.paths == ["/a"], 20, 0.05, "team A's webhook delivered")
            # Past the lease, the killed instance's delivery is taken again and sent.
            wait_for(lambda: team_b.paths == ["/b"], 20, 0.05, "the stale lease taken again")
            wait_for(lambda: all(row.attempts for row in _deliveries(service, "msp-b")), 20, 0.05,
                     "every attempt of team B recorded")
            publish(service, "msp-a")  # past the lease, with team B's failures on record: still delivered
            wait_for(lambda: team_a.paths == ["/a", "/a"], 20, 0.05, "team A's next webhook delivered")
            assert client.get("/notifications/readyz").status_code == 200
            assert dispatcher.healthy
        errors = sorted(str(row.last_error) for row in _deliveries(service, "msp-b") if row.state == "pending")
        assert errors == ["blocked_address", "invalid_header"]  # each attempt's failure, as its class


def test_a_dispatcher_that_keeps_failing_makes_readyz_answer_503_until_it_recovers(database, tmp_path):
    with running(database, tmp_path) as (service, client, _directory):
        assert client.get("/notifications/readyz").status_code == 200
        with dispatching(service):
            # The delivery table goes away under the running loop: every tick now fails.
            _rename(service, "notifications_delivery", "notifications_delivery_away")
            wait_for(lambda: client.get("/notifications/readyz").status_code == 503, 20, 0.1,
                     "readyz reporting the failing dispatcher")
            assert client.get("/notifications/readyz").json()["checks"]["workers"] is False
            _rename(service, "notifications_delivery_away", "notifications_delivery")
            wait_for(lambda: client.get("/notifications/readyz").status_code == 200, 20, 0.1,
                     "readyz back once a tick succeeds")


def _rename(service: Service, old: str, new: str) -> None:
    with service.runtime.engine.begin() as connection:
        connection.execute(text(f"ALTER TABLE {old} RENAME TO {new}"))


def _backport(url: str) -> dict[str, Any]:
    body = subscription()
    body["channel"]["endpoint"] = url
    return body


def _nde(url: str, channel_headers: list[str] | None = None) -> dict[str, Any]:
    body = nde.subscription(endpoint=url)
    if channel_headers is not None:
        body["channel"]["header"] = channel_headers
    return body
