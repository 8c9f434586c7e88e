"""The notifications service on SQLite and the embedded log: handlers, routes, dispatcher, no threads."""

from __future__ import annotations

import json
import threading
import time
import uuid
from datetime import timedelta

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from services.notifications.bootstrap import bootstrap
from services.notifications.commands import QueueHeartbeats
from services.notifications.deps import utcnow
from services.notifications.domain import verify_signature
from services.notifications.entrypoints.consumers import notification_handlers
from services.notifications.fhir import BACKPORT_CONTENT, BACKPORT_FILTER, BACKPORT_HEARTBEAT
from services.notifications.uow import NotificationsUnitOfWork
from shared.bus.envelope import Envelope, PoisonMessage
from shared.db.tables import AuditEntry, OutboxMessage
from shared.settings import NotificationsSettings
from tests.factories import admission_message

SECRET = "a-webhook-secret-of-some-length"
HOOK = "http://127.0.0.1:9/hook"


class Receiver:
    """An httpx MockTransport that fails the first `failures` requests, then answers 200."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.failures > 0:
            self.failures -= 1
            return httpx.Response(503)
        return httpx.Response(200)

    def bodies(self) -> list[dict]:
        return [json.loads(r.content) for r in self.requests]


@pytest.fixture
def receiver() -> Receiver:
    return Receiver()


@pytest.fixture
def service(tmp_path, receiver):
    settings = NotificationsSettings(
        environment="test",
        data_dir=tmp_path,
        webhook_max_attempts=3,
        webhook_backoff_base_seconds=0.0001,
        webhook_backoff_max_seconds=0.001,
        # Receivers listen on loopback: allowed here only (the default allows public addresses only).
        outbound_allowed_networks=["127.0.0.0/8"],
        outbound_allow_http=True,
        subscription_heartbeat_min_seconds=1,  # the heartbeat test waits for a 1 s period
    )
    svc = bootstrap(settings, run_workers=False, transport=httpx.MockTransport(receiver))
    yield svc
    svc.runtime.close()


@pytest.fixture
def client(service):
    return TestClient(service.app)


def token(service, role: str, org: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {service.runtime.directory.add(role, org, org.upper())}"}


def publish(
    service,
    recipient: str,
    n: int = 1,
    *,
    topic="relais.notify.team",
    detail="full",
    event="discharge.recorded",
    patient_key="pk-1",
    ids=None,
) -> list[str]:
    handlers = notification_handlers(service.app.state.messagebus, threading.Event())
    sent = []
    for i in range(n):
        payload = admission_message() if detail == "full" else {"event": event, "commune": "88160"}
        envelope = Envelope(
            id=ids[i] if ids else str(uuid.uuid4()),
            type=event,
            key=recipient,
            source="discharge",
            data={
                "recipient": recipient,
                "role": topic.rsplit(".", 1)[1],
                "detail": detail,
                "event": event,
                "patient_key": patient_key,
                "sender": "chu-1",
                "subject": f"enc-{i}",
                "payload": payload,
            },
        )
        handlers[topic](envelope)
        sent.append(envelope.id)
    return sent


def feed_ids(bundle: dict) -> list[str]:
    return [entry["resource"]["id"] for entry in bundle.get("entry", [])]


def next_cursor(bundle: dict) -> str:
    url = next(link["url"] for link in bundle["link"] if link["relation"] == "next")
    assert bundle["meta"]["tag"][0]["code"] == url.split("after=")[1].split("&")[0]
    return url.split("after=")[1].split("&")[0]


def audit_entries(service, action: str) -> list[AuditEntry]:
    with service.runtime.sessions() as session:
        return list(session.execute(select(AuditEntry).where(AuditEntry.action == action)).scalars())


# --- feed ----------------------------------------------------------------------------------------


def test_the_feed_pages_through_ones_own_notifications_oldest_first(service, client):
    msp = token(service, "team", "msp-1")
    mine = publish(service, "msp-1", 3)
    publish(service, "msp-2", 2)
    mine += publish(service, "msp-1", 2)
    seen, cursor = [], ""
    for _ in range(4):
        response = client.get(f"/notifications/feed?after={cursor}&limit=2", headers=msp)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/fhir+json")
        seen += feed_ids(response.json())
        cursor = next_cursor(response.json())
    assert seen == mine
    # the last page is empty and keeps the cursor where it was
    empty = client.get(f"/notifications/feed?after={cursor}", headers=msp).json()
    assert feed_ids(empty) == [] and next_cursor(empty) == cursor


def test_a_redelivered_envelope_is_stored_once(service, client):
    msp = token(service, "team", "msp-1")
    ids = publish(service, "msp-1", 1)
    publish(service, "msp-1", 1, ids=ids)
    assert feed_ids(client.get("/notifications/feed", headers=msp).json()) == ids


def test_a_message_breaking_the_contract_is_a_poison_message(service):
    handlers = notification_handlers(service.app.state.messagebus, threading.Event())
    envelope = Envelope(
        type="x",
        key="cpts-1",
        source="t",
        data={
            "recipient": "cpts-1",
            "role": "cpts",
            "detail": "full",
            "event": "admission.recorded",
            "payload": admission_message(),
        },
    )
    with pytest.raises(PoisonMessage):
        handlers["relais.notify.cpts"](envelope)


def test_a_bad_cursor_is_a_400_operation_outcome(service, client):
    response = client.get("/notifications/feed?after=abc", headers=token(service, "team", "msp-1"))
    assert response.status_code == 400
    assert response.json()["resourceType"] == "OperationOutcome"


def test_the_feed_needs_a_token(client):
    assert client.get("/notifications/feed").status_code == 401


def test_ack_is_idempotent_and_sends_one_read_receipt_to_the_sender(service, client):
    msp = token(service, "team", "msp-1")
    hospital = token(service, "hospital", "chu-1")
    (nid,) = publish(service, "msp-1")
    first = client.post(f"/notifications/feed/{nid}/$ack", headers=msp)
    second = client.post(f"/notifications/feed/{nid}/$ack", headers=msp)
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json()
    with service.runtime.sessions() as session:
        rows = list(session.execute(select(OutboxMessage)).scalars())
    assert [(r.topic, r.key, r.event_type) for r in rows] == [
        ("relais.receipts", "chu-1", "notification.read")
    ]
    receipt = json.loads(rows[0].value)["data"]
    assert (receipt["notification_id"], receipt["reader"], receipt["sender"]) == (nid, "msp-1", "chu-1")
    receipts = client.get("/notifications/receipts", headers=hospital).json()
    assert [e["resource"]["parameter"][0]["valueString"] for e in receipts["entry"]] == [nid]
    assert client.get("/notifications/receipts", headers=msp).json().get("entry") is None


def test_acking_another_organisations_notification_is_a_404_and_is_audited(service, client):
    (nid,) = publish(service, "msp-1")
    other = token(service, "team", "msp-2")
    response = client.post(f"/notifications/feed/{nid}/$ack", headers=other)
    assert response.status_code == 404
    entries = audit_entries(service, "notification.ack")
    assert [(e.organisation_id, e.outcome, e.resource) for e in entries] == [
        ("msp-2", "not-found", f"notification/{nid}")
    ]


# --- webhooks ------------------------------------------------------------------------------------


def register(client, headers, url=HOOK, secret=SECRET) -> dict:
    response = client.post("/notifications/webhooks", json={"url": url, "secret": secret}, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


def test_each_delivery_is_signed_and_carries_the_notification(service, client, receiver):
    msp = token(service, "team", "msp-1")
    register(client, msp)
    (nid,) = publish(service, "msp-1")
    service.app.state.dispatcher.run_due()
    (request,) = receiver.requests
    assert request.headers["relais-notification-id"] == nid
    assert verify_signature(SECRET, request.headers["relais-signature"], request.content, now=time.time())
    assert receiver.bodies()[0]["entry"][0]["resource"]["id"] == nid


def test_a_generated_secret_is_shown_once(service, client):
    msp = token(service, "team", "msp-1")
    created = client.post("/notifications/webhooks", json={"url": HOOK}, headers=msp).json()
    assert len(created["secret"]) >= 32
    assert "secret" not in client.get(f"/notifications/webhooks/{created['id']}", headers=msp).json()


@pytest.mark.parametrize("body", [{"url": "https://10.1.2.3/hook"}, {"url": HOOK, "secret": "short"}])
def test_an_unsafe_webhook_is_refused(service, client, body):
    assert (
        client.post("/notifications/webhooks", json=body, headers=token(service, "team", "msp-1")).status_code
        == 422
    )


def test_a_failing_endpoint_is_retried_with_backoff_then_dead_lettered_and_can_be_redelivered(
    service, client, receiver
):
    msp = token(service, "team", "msp-1")
    register(client, msp)
    receiver.failures = 10
    (nid,) = publish(service, "msp-1")
    dispatcher = service.app.state.dispatcher
    for _ in range(3):
        dispatcher.run_due()
        time.sleep(0.002)  # longer than the (tiny) backoff configured for this test
    dead = client.get("/notifications/webhooks/deliveries?state=dead", headers=msp).json()
    assert [(d["notification_id"], d["attempts"], d["last_status"]) for d in dead] == [(nid, 3, 503)]
    receiver.failures = 0
    redelivered = client.post(f"/notifications/webhooks/deliveries/{dead[0]['id']}/$redeliver", headers=msp)
    assert redelivered.json()["state"] == "pending"
    dispatcher.run_due()
    assert (
        client.get(f"/notifications/webhooks/deliveries/{dead[0]['id']}", headers=msp).json()["state"]
        == "delivered"
    )
    assert len(receiver.requests) == 4


def test_one_endpoint_receives_in_order_and_a_failure_holds_back_the_rest_of_its_queue(
    service, client, receiver
):
    msp = token(service, "team", "msp-1")
    register(client, msp)
    receiver.failures = 1
    ids = publish(service, "msp-1", 3)
    dispatcher = service.app.state.dispatcher
    assert len(dispatcher.run_due()) == 1  # only the head of the queue is tried
    while len([r for r in receiver.requests]) < 4:
        time.sleep(0.002)
        dispatcher.run_due()
    delivered = [r.headers["relais-notification-id"] for r in receiver.requests]
    assert delivered == [ids[0], ids[0], ids[1], ids[2]]


def test_a_deleted_webhook_gets_nothing_more(service, client, receiver):
    msp = token(service, "team", "msp-1")
    hook = register(client, msp)
    publish(service, "msp-1")
    assert client.delete(f"/notifications/webhooks/{hook['id']}", headers=msp).status_code == 204
    service.app.state.dispatcher.run_due()
    assert receiver.requests == []
    assert client.get("/notifications/webhooks", headers=msp).json() == []


# --- subscriptions -------------------------------------------------------------------------------


def subscription(topic="discharge", content="id-only", filters=(), heartbeat=None) -> dict:
    channel = {
        "type": "rest-hook",
        "endpoint": HOOK,
        "payload": "application/fhir+json",
        "_payload": {"extension": [{"url": BACKPORT_CONTENT, "valueCode": content}]},
        "header": ["X-Api-Key: k"],
    }
    if heartbeat:
        channel["extension"] = [{"url": BACKPORT_HEARTBEAT, "valueUnsignedInt": heartbeat}]
    body = {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "test",
        "criteria": f"https://relais.example.org/fhir/SubscriptionTopic/{topic}",
        "channel": channel,
    }
    if filters:
        body["_criteria"] = {"extension": [{"url": BACKPORT_FILTER, "valueString": f} for f in filters]}
    return body


def create(client, headers, body) -> dict:
    response = client.post(
        "/notifications/fhir/Subscription",
        json=body,
        headers={**headers, "Content-Type": "application/fhir+json"},
    )
    assert response.status_code == 201, response.text
    return response.json()


def status_of(bundle: dict) -> dict:
    return {p["name"]: p for p in bundle["entry"][0]["resource"]["parameter"]}


def test_a_subscription_is_activated_by_its_handshake_then_numbers_its_events(service, client, receiver):
    msp = token(service, "team", "msp-1")
    sub = create(client, msp, subscription(filters=["Encounter?patient=pk-1"]))
    assert sub["status"] == "requested"
    dispatcher = service.app.state.dispatcher
    dispatcher.run_due()
    assert status_of(receiver.bodies()[0])["type"]["valueCode"] == "handshake"
    assert receiver.requests[0].headers["x-api-key"] == "k"
    assert (
        client.get(f"/notifications/fhir/Subscription/{sub['id']}", headers=msp).json()["status"] == "active"
    )
    publish(service, "msp-1", 2)
    publish(service, "msp-1", 1, patient_key="pk-other")  # filtered out
    publish(service, "msp-1", 1, event="admission.recorded")  # another topic
    for _ in range(2):
        dispatcher.run_due()
    numbers = [
        status_of(body)["notification-event"]["part"][0]["valueString"] for body in receiver.bodies()[1:]
    ]
    assert numbers == ["1", "2"]
    status = client.get(f"/notifications/fhir/Subscription/{sub['id']}/$status", headers=msp).json()
    assert status_of(status)["events-since-subscription-start"]["valueString"] == "2"


def test_events_returns_exactly_the_requested_range(service, client):
    msp = token(service, "team", "msp-1")
    sub = create(client, msp, subscription(content="full-resource"))
    ids = publish(service, "msp-1", 5)
    bundle = client.get(
        f"/notifications/fhir/Subscription/{sub['id']}/$events?eventsSinceNumber=2&eventsUntilNumber=4",
        headers=msp,
    ).json()
    assert bundle["type"] == "history"
    assert status_of(bundle)["type"]["valueCode"] == "query-event"
    assert [e["resource"]["id"] for e in bundle["entry"][1:]] == ids[1:4]
    everything = client.get(f"/notifications/fhir/Subscription/{sub['id']}/$events", headers=msp).json()
    assert len(everything["entry"]) == 6


def test_a_quiet_active_subscription_gets_heartbeats(service, client, receiver):
    msp = token(service, "team", "msp-1")
    sub = create(client, msp, subscription(heartbeat=1))
    dispatcher = service.app.state.dispatcher
    dispatcher.run_due()  # handshake
    bus = service.app.state.messagebus
    assert bus.handle(QueueHeartbeats(utcnow())) == 0  # the handshake was just sent
    with service.runtime.unit_of_work(NotificationsUnitOfWork) as uow:
        uow.subscriptions.get(sub["id"]).last_sent_at = utcnow() - timedelta(seconds=2)
        uow.commit()
    assert bus.handle(QueueHeartbeats(utcnow())) == 1
    assert bus.handle(QueueHeartbeats(utcnow())) == 0  # one per period
    dispatcher.run_due()
    assert status_of(receiver.bodies()[-1])["type"]["valueCode"] == "heartbeat"
    assert sub["id"] in status_of(receiver.bodies()[-1])["subscription"]["valueReference"]["reference"]


def test_an_unknown_topic_is_refused(service, client):
    response = client.post(
        "/notifications/fhir/Subscription",
        json={**subscription(), "criteria": "https://relais.example.org/fhir/SubscriptionTopic/billing"},
        headers={**token(service, "team", "msp-1"), "Content-Type": "application/fhir+json"},
    )
    assert response.status_code == 422
    assert response.json()["resourceType"] == "OperationOutcome"


def test_another_organisations_subscription_is_a_404_and_is_audited(service, client):
    sub = create(client, token(service, "team", "msp-1"), subscription())
    other = token(service, "dac", "dac-1")
    for path in ("", "/$status", "/$events"):
        assert (
            client.get(f"/notifications/fhir/Subscription/{sub['id']}{path}", headers=other).status_code
            == 404
        )
    assert client.delete(f"/notifications/fhir/Subscription/{sub['id']}", headers=other).status_code == 404
    assert (
        len([e for e in audit_entries(service, "subscription.status") if e.organisation_id == "dac-1"]) == 1
    )
    assert len(audit_entries(service, "subscription.delete")) == 1
