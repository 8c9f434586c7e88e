"""The notifications service on real Postgres and a real Kafka-protocol broker (Tansu), delivering to real
HTTP receivers on loopback: order, retries, dead-letter, a killed instance, `$events`, and no leak."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from services.notifications.bootstrap import bootstrap
from services.notifications.domain import verify_signature
from services.notifications.fhir import BACKPORT_CONTENT, BACKPORT_FILTER
from shared.bus.envelope import Envelope
from shared.bus.kafka import KafkaBus
from shared.db.engine import make_engine
from shared.db.tables import AuditEntry
from shared.settings import NotificationsSettings
from tests.factories import admission_message
from tests.infra.wait import wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.kafka]

REPO_ROOT = Path(__file__).resolve().parents[2]
SECRET = "integration-webhook-secret-0123456789"
TOPIC_BASE = "https://relais.example.org/fhir/SubscriptionTopic/"


# --- a real HTTP receiver --------------------------------------------------------------------


class Receiver:
    """An HTTP server on 127.0.0.1 that can fail the first N requests, be down, or hold requests."""

    def __init__(self, fail_first: int = 0, down: bool = False, hold: bool = False) -> None:
        self.fail_first = fail_first
        self.down = down
        self.release = threading.Event()
        if not hold:
            self.release.set()
        self.lock = threading.Lock()
        self.attempts: list[dict] = []  # every request, in arrival order
        self.accepted: list[dict] = []  # requests answered 2xx
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                item = {"headers": {k.lower(): v for k, v in self.headers.items()}, "body": body}
                with receiver.lock:
                    receiver.attempts.append(item)
                    failing = receiver.down or receiver.fail_first > 0
                    if receiver.fail_first > 0:
                        receiver.fail_first -= 1
                receiver.release.wait(30)
                if failing:
                    self.send_response(503)
                else:
                    with receiver.lock:
                        receiver.accepted.append(item)
                    self.send_response(204)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/relais"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def accepted_ids(self, kind: str = "notification") -> list[str]:
        with self.lock:
            return [
                a["headers"]["relais-notification-id"]
                for a in self.accepted
                if a["headers"].get("relais-delivery-kind") == kind
            ]

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receivers() -> Iterator[list[Receiver]]:
    made: list[Receiver] = []
    yield made
    for receiver in made:
        receiver.close()


def receiver(made: list[Receiver], **kwargs) -> Receiver:
    r = Receiver(**kwargs)
    made.append(r)
    return r


# --- the service -----------------------------------------------------------------------------


@pytest.fixture
def settings(postgres_url, tansu, tmp_path) -> NotificationsSettings:
    api_version = ".".join(map(str, tansu.api_version)) if tansu.api_version else None
    return NotificationsSettings(
        database_url=postgres_url,
        kafka_bootstrap_servers=tansu.bootstrap,
        kafka_api_version=api_version,
        kafka_session_timeout_ms=2000,
        environment="test",
        data_dir=tmp_path,
        webhook_max_attempts=5,
        webhook_backoff_base_seconds=0.05,
        webhook_backoff_max_seconds=0.2,
        webhook_timeout_seconds=1.0,
        webhook_lease_seconds=2.0,
        dispatcher_idle_seconds=0.05,
        # Receivers listen on loopback: allowed here only (the default allows public addresses only).
        outbound_allowed_networks=["127.0.0.0/8"],
        outbound_allow_http=True,
    )


@pytest.fixture
def producer(tansu):
    bus = KafkaBus(tansu.bootstrap, api_version=tansu.api_version, session_timeout_ms=2000)
    prod = bus.producer()
    yield prod
    prod.close()
    bus.close()


def org(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def publish(
    producer,
    recipient: str,
    n: int,
    *,
    role="team",
    event="discharge.recorded",
    sender="chu-int",
    patient_key="pk-int",
) -> list[str]:
    """Notifications as docs/events.md defines them, keyed by recipient on its role's notify topic."""
    ids = []
    for i in range(n):
        envelope = Envelope(
            type=event,
            key=recipient,
            source="discharge",
            data={
                "recipient": recipient,
                "role": role,
                "detail": "full" if role != "cpts" else "minimised",
                "event": event,
                "patient_key": patient_key,
                "sender": sender,
                "subject": f"enc-{i}",
                "payload": admission_message() if role != "cpts" else {"event": event, "commune": "88160"},
            },
        )
        producer.send(f"relais.notify.{role}", recipient, envelope.to_json().encode())
        ids.append(envelope.id)
    producer.flush()
    return ids


def auth(service, role: str, org_id: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {service.runtime.directory.add(role, org_id, org_id)}"}


def register(client, headers, url: str) -> dict:
    response = client.post("/notifications/webhooks", json={"url": url, "secret": SECRET}, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


def subscribe(client, headers, url: str, topic="discharge", content="id-only", filters=()) -> dict:
    body = {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "integration",
        "criteria": TOPIC_BASE + topic,
        "channel": {
            "type": "rest-hook",
            "endpoint": url,
            "payload": "application/fhir+json",
            "_payload": {"extension": [{"url": BACKPORT_CONTENT, "valueCode": content}]},
        },
    }
    if filters:
        body["_criteria"] = {"extension": [{"url": BACKPORT_FILTER, "valueString": f} for f in filters]}
    response = client.post(
        "/notifications/fhir/Subscription",
        json=body,
        headers={**headers, "Content-Type": "application/fhir+json"},
    )
    assert response.status_code == 201, response.text
    return response.json()


def first_seen(ids: list[str]) -> list[str]:
    return list(dict.fromkeys(ids))


# --- delivery --------------------------------------------------------------------------------


def test_each_organisation_receives_in_order_and_a_receiver_failing_three_times_gets_each_once(
    settings, producer, receivers
):
    flaky, healthy = receiver(receivers, fail_first=3), receiver(receivers)
    service = bootstrap(settings)
    a, b = org("msp"), org("msp")
    with TestClient(service.app) as client:
        register(client, auth(service, "team", a), flaky.url)
        register(client, auth(service, "team", b), healthy.url)
        sent_a, sent_b = [], []
        for _ in range(4):  # interleaved, as they would arrive from several hospitals
            sent_a += publish(producer, a, 3)
            sent_b += publish(producer, b, 3)
        wait_for(
            lambda: len(flaky.accepted_ids()) >= 12 and len(healthy.accepted_ids()) >= 12,
            timeout=60,
            message=lambda: f"deliveries: a={len(flaky.accepted_ids())} b={len(healthy.accepted_ids())}",
        )
        assert flaky.accepted_ids() == sent_a  # in order, each exactly once
        assert healthy.accepted_ids() == sent_b
        assert len(flaky.attempts) == 12 + 3
        for item in flaky.accepted + healthy.accepted:
            assert verify_signature(
                SECRET, item["headers"]["relais-signature"], item["body"], now=time.time()
            )
    service.runtime.close()


def test_a_receiver_down_for_good_ends_in_dead_letter_while_another_keeps_receiving(
    settings, producer, receivers
):
    # The dead endpoint also hangs until the request times out: the other organisation must not wait for it.
    dead, alive = receiver(receivers, down=True, hold=True), receiver(receivers)
    settings = settings.model_copy(update={"webhook_max_attempts": 3})
    service = bootstrap(settings)
    a, b = org("msp"), org("cpts")
    with TestClient(service.app) as client:
        a_headers = auth(service, "team", a)
        register(client, a_headers, dead.url)
        register(client, auth(service, "cpts", b), alive.url)
        (lost,) = publish(producer, a, 1)
        wait_for(lambda: dead.attempts, timeout=30, message="first attempt at the dead endpoint")
        started = time.monotonic()
        sent_b = publish(producer, b, 5, role="cpts")
        wait_for(
            lambda: alive.accepted_ids() == sent_b, timeout=30, message="deliveries to the live endpoint"
        )
        assert time.monotonic() - started < 3 * settings.webhook_timeout_seconds + 5
        dead.release.set()  # from now on the dead endpoint answers 503 at once

        def dead_letters():
            return client.get("/notifications/webhooks/deliveries?state=dead", headers=a_headers).json()

        rows = wait_for(dead_letters, timeout=30, message="dead-letter state")
        assert [(r["notification_id"], r["attempts"], r["state"]) for r in rows] == [(lost, 3, "dead")]
        assert alive.accepted_ids() == sent_b
        # once the endpoint is back, the dead delivery can be sent again on demand
        dead.down = False
        redo = client.post(
            f"/notifications/webhooks/deliveries/{rows[0]['id']}/$redeliver", headers=a_headers
        )
        assert redo.status_code == 200
        wait_for(lambda: dead.accepted_ids() == [lost], timeout=30, message="redelivery")
    service.runtime.close()


# --- subscriptions ---------------------------------------------------------------------------


def test_events_returns_exactly_the_events_a_subscriber_missed(settings, producer, receivers):
    endpoint = receiver(receivers)
    settings = settings.model_copy(update={"webhook_max_attempts": 2})
    service = bootstrap(settings)
    a = org("msp")
    with TestClient(service.app) as client:
        headers = auth(service, "team", a)
        sub = subscribe(client, headers, endpoint.url, filters=["Encounter?patient=pk-watch"])
        sub_url = f"/notifications/fhir/Subscription/{sub['id']}"
        wait_for(
            lambda: client.get(sub_url, headers=headers).json()["status"] == "active",
            timeout=30,
            message="handshake",
        )
        (first,) = publish(producer, a, 1, patient_key="pk-watch")
        wait_for(
            lambda: endpoint.accepted_ids("event-notification") == [first],
            timeout=30,
            message=lambda: (
                f"event 1: {client.get('/notifications/webhooks/deliveries', headers=headers).json()}"
                f" {client.get('/notifications/feed', headers=headers).text[:300]} {endpoint.attempts}"
            ),
        )

        endpoint.down = True
        missed = publish(producer, a, 3, patient_key="pk-watch")
        publish(producer, a, 2, patient_key="pk-someone-else")  # filtered out: never numbered
        wait_for(
            lambda: client.get(sub_url, headers=headers).json()["status"] == "error",
            timeout=30,
            message="subscription in error after failed deliveries",
        )
        endpoint.down = False

        status = client.get(f"{sub_url}/$status", headers=headers).json()
        params = {p["name"]: p for p in status["entry"][0]["resource"]["parameter"]}
        assert params["events-since-subscription-start"]["valueString"] == "4"
        replay = client.get(
            f"{sub_url}/$events?eventsSinceNumber=2&eventsUntilNumber=4&content=full-resource",
            headers=headers,
        ).json()
        assert replay["type"] == "history"
        assert [e["resource"]["id"] for e in replay["entry"][1:]] == missed
        numbers = [
            p["part"][0]["valueString"]
            for p in replay["entry"][0]["resource"]["parameter"]
            if p["name"] == "notification-event"
        ]
        assert numbers == ["2", "3", "4"]
        # the next event is delivered and brings the subscription back to active
        (later,) = publish(producer, a, 1, patient_key="pk-watch")
        wait_for(lambda: later in endpoint.accepted_ids("event-notification"), timeout=30, message="event 5")
        assert client.get(sub_url, headers=headers).json()["status"] == "active"
    service.runtime.close()


# --- access ----------------------------------------------------------------------------------


def test_no_endpoint_leaks_anything_to_another_organisation_or_role(settings, producer, receivers):
    endpoint = receiver(receivers, down=True)
    settings = settings.model_copy(update={"webhook_max_attempts": 1})
    service = bootstrap(settings)
    owner, sender = org("msp"), org("chu")
    with TestClient(service.app) as client:
        mine = auth(service, "team", owner)
        hook = register(client, mine, endpoint.url)
        sub = subscribe(client, mine, endpoint.url)
        (nid,) = publish(producer, owner, 1, sender=sender, patient_key="pk-secret-patient")

        def own_feed():
            return [
                e["resource"]["id"]
                for e in client.get("/notifications/feed", headers=mine).json().get("entry", [])
            ]

        wait_for(lambda: own_feed() == [nid], timeout=30, message="the owner's notification")
        deliveries = wait_for(
            lambda: client.get("/notifications/webhooks/deliveries?state=dead", headers=mine).json(),
            timeout=30,
            message="a dead delivery",
        )
        assert client.post(f"/notifications/feed/{nid}/$ack", headers=mine).status_code == 200

        others = {
            "another team": auth(service, "team", org("msp")),
            "the sender hospital": auth(service, "hospital", sender),
            "another hospital": auth(service, "hospital", org("chu")),
            "a cpts": auth(service, "cpts", org("cpts")),
            "a dac": auth(service, "dac", org("dac")),
            "a sas": auth(service, "sas", org("sas")),
            "an admin": auth(service, "admin", org("admin")),
        }
        secrets_of_owner = [
            hook["id"],
            sub["id"],
            endpoint.url,
            SECRET,
            "pk-secret-patient",
            deliveries[0]["id"],
        ]
        reads = [
            ("GET", "/notifications/feed"),
            ("GET", "/notifications/feed?after=0&limit=200"),
            ("GET", "/notifications/webhooks"),
            ("GET", "/notifications/webhooks/deliveries"),
            ("GET", "/notifications/webhooks/deliveries?state=dead"),
            ("GET", f"/notifications/webhooks/deliveries?target={hook['id']}"),
            ("GET", "/notifications/fhir/Subscription"),
        ]
        denied = [
            ("POST", f"/notifications/feed/{nid}/$ack"),
            ("GET", f"/notifications/webhooks/{hook['id']}"),
            ("DELETE", f"/notifications/webhooks/{hook['id']}"),
            ("GET", f"/notifications/webhooks/deliveries/{deliveries[0]['id']}"),
            ("POST", f"/notifications/webhooks/deliveries/{deliveries[0]['id']}/$redeliver"),
            ("GET", f"/notifications/fhir/Subscription/{sub['id']}"),
            ("GET", f"/notifications/fhir/Subscription/{sub['id']}/$status"),
            ("GET", f"/notifications/fhir/Subscription/{sub['id']}/$events"),
            ("DELETE", f"/notifications/fhir/Subscription/{sub['id']}"),
        ]
        for who, headers in others.items():
            for method, path in reads:
                response = client.request(method, path, headers=headers)
                assert response.status_code == 200, (who, path)
                assert nid not in response.text and not any(s in response.text for s in secrets_of_owner), (
                    who,
                    path,
                )
            for method, path in denied:
                response = client.request(method, path, headers=headers)
                assert response.status_code == 404, (who, method, path, response.status_code)
                assert response.json()["resourceType"] == "OperationOutcome"
                assert endpoint.url not in response.text and "pk-secret-patient" not in response.text
            receipts = client.get("/notifications/receipts", headers=headers)
            assert receipts.status_code == 200
            # the sender, and only the sender, learns that the team read what it sent
            assert (nid in receipts.text) == (who == "the sender hospital"), who
            assert "pk-secret-patient" not in receipts.text
        # nothing of the owner's changed, and every attempt was audited
        assert client.get(f"/notifications/webhooks/{hook['id']}", headers=mine).status_code == 200
        assert (
            client.get(f"/notifications/fhir/Subscription/{sub['id']}", headers=mine).json()["status"]
            != "off"
        )
        assert (
            client.get(f"/notifications/webhooks/deliveries/{deliveries[0]['id']}", headers=mine).json()[
                "state"
            ]
            == "dead"
        )
        for path in ("/notifications/feed", f"/notifications/webhooks/{hook['id']}"):
            assert client.get(path).status_code == 401
    engine = make_engine(settings.resolved_database_url)
    with engine.connect() as connection:
        audited = connection.execute(
            select(AuditEntry.organisation_id, AuditEntry.outcome).where(AuditEntry.outcome == "not-found")
        ).all()
    engine.dispose()
    assert len(audited) == len(others) * len(denied)
    service.runtime.close()


# --- crash (last: a SIGKILLed group member may slow the broker's next rebalance) ------------


CHILD = """
import sys, threading
from services.notifications.bootstrap import bootstrap
from shared.settings import NotificationsSettings
settings = NotificationsSettings.model_validate_json(sys.stdin.read())
service = bootstrap(settings)
service.runtime.start()
print("started", flush=True)
threading.Event().wait()
"""


def test_killing_an_instance_mid_delivery_loses_nothing(settings, producer, receivers, tmp_path):
    holding = receiver(receivers, hold=True)
    setup = bootstrap(settings, run_workers=False)
    a = org("msp")
    register(TestClient(setup.app), auth(setup, "team", a), holding.url)
    setup.runtime.close()

    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
        cwd=tmp_path,
        text=True,
    )
    try:
        child.stdin.write(settings.model_dump_json())
        child.stdin.close()
        assert child.stdout.readline().strip() == "started"
        sent = publish(producer, a, 6)
        # the first delivery is in flight (the receiver holds it): kill the instance now
        wait_for(lambda: holding.attempts, timeout=60, message="a delivery in flight")
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    holding.release.set()

    successor = bootstrap(settings)
    with TestClient(successor.app):
        wait_for(
            lambda: set(holding.accepted_ids()) >= set(sent),
            timeout=60,
            message=lambda: f"{len(set(holding.accepted_ids()))} of {len(sent)} after the restart",
        )
    successor.runtime.close()
    received = holding.accepted_ids()
    assert first_seen(received) == sent  # nothing lost, still in order
    # at-least-once: only the delivery that was in flight at the kill may arrive twice
    assert len(received) - len(set(received)) <= 1
