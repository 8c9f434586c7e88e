"""The notifications service as an attacker with a valid token would try it: inward endpoints, reserved
headers, error texts as a port scanner, huge answers, unlimited registrations, 1 s heartbeats, one
organisation's hanging endpoints starving another's, and no rate limit. Loopback only, bounded."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from fastapi.testclient import TestClient

from services.notifications.bootstrap import bootstrap
from services.notifications.fhir.common import BACKPORT_HEARTBEAT
from shared.service import Service
from shared.settings import NotificationsSettings
from tests.security.servers import ScriptedServer, answer
from tests.unit.test_notifications_service import publish, subscription

pytestmark = pytest.mark.attack

FHIR = "application/fhir+json"
LOOPBACK = {"outbound_allowed_networks": ["127.0.0.0/8"], "outbound_allow_http": True}

INWARD = [
    "https://127.0.0.1/hook",
    "https://0.0.0.0/hook",
    "https://[::1]/hook",
    "https://10.0.0.8/hook",
    "https://172.16.4.2/hook",
    "https://192.168.1.1/hook",
    "https://[fd00::1]/hook",
    "https://169.254.169.254/latest/meta-data",
    "https://metadata.google.internal/computeMetadata",
    "https://100.64.0.1/hook",
    "https://localhost/hook",
    "http://127.0.0.1:8080/hook",
]


def _service(tmp_path, **settings: Any) -> Service:
    values = {"environment": "test", "data_dir": tmp_path, **settings}
    return bootstrap(NotificationsSettings(**values), run_workers=False)


@pytest.fixture
def strict(tmp_path) -> Iterator[tuple[Service, TestClient]]:
    """The default outbound policy of every environment: public addresses only."""
    service = _service(tmp_path, webhooks_max_per_organisation=2, subscriptions_max_per_organisation=2)
    with TestClient(service.app) as client:
        yield service, client
    service.runtime.close()


def auth(service: Service, org: str, role: str = "team") -> dict[str, str]:
    return {"Authorization": f"Bearer {service.runtime.directory.add(role, org, org)}", "Content-Type": FHIR}


def subscription_to(url: str, **change: Any) -> dict:
    body = subscription()
    body["channel"]["endpoint"] = url
    body["channel"].update(change)
    return body


def outcome(response, status: int = 422) -> str:
    assert response.status_code == status, response.text
    assert response.json()["resourceType"] == "OperationOutcome"
    return response.text


@pytest.mark.parametrize("url", INWARD)
def test_inward_webhooks_and_subscriptions_are_refused_without_echoing_the_url(strict, url):
    service, client = strict
    msp = auth(service, "msp-1")
    host = url.split("//")[1].split("/")[0]
    for response in (
        client.post("/notifications/webhooks", json={"url": url}, headers=msp),
        client.post("/notifications/fhir/Subscription", json=subscription_to(url), headers=msp),
    ):
        assert host not in outcome(response)
    assert client.get("/notifications/webhooks", headers=msp).json() == []


def test_creating_a_subscription_to_loopback_never_connects(strict):
    service, client = strict
    with ScriptedServer(answer()) as server:
        url = f"https://127.0.0.1:{server.port}/hook"
        outcome(client.post("/notifications/fhir/Subscription", json=subscription_to(url), headers=auth(service, "m")))
        service.app.state.dispatcher.run_due()
    assert server.connections == 0


@pytest.mark.parametrize(
    "header",
    ["Host: intranet.local", "Relais-Signature: t=1,v1=forged", "Relais-Delivery-Id: x", "Content-Length: 0",
     "X-Forwarded-For: 10.0.0.1", "X-Ok: a\r\nHost: evil", "Transfer-Encoding: chunked", "no colon"],
)
def test_reserved_or_malformed_channel_headers_are_refused(strict, header):
    service, client = strict
    body = subscription_to("https://msp.example.fr/hook", header=[header])
    outcome(client.post("/notifications/fhir/Subscription", json=body, headers=auth(service, "msp-1")))


def test_webhooks_subscriptions_and_heartbeats_are_limited(strict):
    service, client = strict
    msp = auth(service, "msp-1")
    for i in range(2):
        assert client.post("/notifications/webhooks", json={"url": f"https://msp.example.fr/h{i}"},
                           headers=msp).status_code == 201
        assert client.post("/notifications/fhir/Subscription", json=subscription_to(f"https://msp.example.fr/s{i}"),
                           headers=msp).status_code == 201
    outcome(client.post("/notifications/webhooks", json={"url": "https://msp.example.fr/h9"}, headers=msp))
    outcome(client.post("/notifications/fhir/Subscription", json=subscription_to("https://msp.example.fr/s9"),
                        headers=msp))
    # Another organisation has its own allowance; a 1 s heartbeat is refused (minimum 30 s by default).
    other = auth(service, "msp-2")
    body = subscription_to("https://msp.example.fr/hb")
    body["channel"]["extension"] = [{"url": BACKPORT_HEARTBEAT, "valueUnsignedInt": 1}]
    outcome(client.post("/notifications/fhir/Subscription", json=body, headers=other))
    body["channel"]["extension"][0]["valueUnsignedInt"] = 60
    assert client.post("/notifications/fhir/Subscription", json=body, headers=other).status_code == 201


# --- what a delivery stores ----------------------------------------------------------------------


def _free_port() -> int:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    return port


def _flood(conn: socket.socket) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000000\r\n\r\n")
    chunk = b"x" * 65536
    for _ in range(1600):  # 100 MB if Relais kept reading; it stops after a few kilobytes
        conn.sendall(chunk)


def test_stored_errors_are_classes_so_a_closed_and_an_open_port_say_nothing_more(tmp_path):
    service = _service(tmp_path, webhook_max_attempts=5, webhook_timeout_seconds=5, **LOOPBACK)
    try:
        client = TestClient(service.app)
        msp = auth(service, "msp-1")
        with ScriptedServer(answer(500, b"internal: db at 10.0.0.5:5432 refused")) as open_port, \
                ScriptedServer(_flood) as flood:
            urls = [f"http://127.0.0.1:{_free_port()}/hook", f"http://127.0.0.1:{open_port.port}/hook"]
            for url in urls:
                assert client.post("/notifications/webhooks", json={"url": url}, headers=msp).status_code == 201
            created = client.post("/notifications/fhir/Subscription",
                                  json=subscription_to(f"http://127.0.0.1:{flood.port}/hook"), headers=msp)
            assert created.status_code == 201, created.text
            publish(service, "msp-1")
            service.app.state.dispatcher.run_due()
        deliveries = client.get("/notifications/webhooks/deliveries", headers=msp).json()
        errors = {d["kind"] + ":" + str(d["last_error"]) for d in deliveries if d["attempts"]}
        assert errors == {"notification:refused", "notification:http_500", "handshake:too_large"}
        status = client.get(f"/notifications/fhir/Subscription/{created.json()['id']}", headers=msp).json()
        assert status["status"] == "requested"
    finally:
        service.runtime.close()


# --- fairness ------------------------------------------------------------------------------------


class _Receiver:
    """A loopback HTTP receiver; `hang` holds every request until released (bounded), counting them."""

    def __init__(self, hang: bool) -> None:
        self.release = threading.Event()
        self.holding = 0
        self.most_held = 0
        self.paths: list[str] = []
        lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with lock:
                    receiver.paths.append(self.path)
                    receiver.holding += 1
                    receiver.most_held = max(receiver.most_held, receiver.holding)
                if hang:
                    receiver.release.wait(60)
                with lock:
                    receiver.holding -= 1
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> _Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def test_one_organisations_hanging_endpoints_do_not_delay_another(tmp_path):
    # Each attempt may last 60 s: before per-organisation shares, six hanging endpoints of one organisation
    # held the whole pool of four threads and the other organisation waited for their deadline.
    service = _service(tmp_path, webhook_workers=4, webhook_workers_per_organisation=2, webhook_timeout_seconds=60,
                       dispatcher_idle_seconds=0.05, **LOOPBACK)
    stop = threading.Event()
    dispatcher = threading.Thread(target=service.app.state.dispatcher.run, args=(stop,), daemon=True)
    try:
        client = TestClient(service.app)
        with _Receiver(hang=True) as slow, _Receiver(hang=False) as fast:
            noisy = auth(service, "msp-noisy")
            for i in range(6):
                response = client.post("/notifications/webhooks", json={"url": f"{slow.url}/n{i}"}, headers=noisy)
                assert response.status_code == 201
            assert client.post("/notifications/webhooks", json={"url": f"{fast.url}/q"},
                               headers=auth(service, "msp-quiet")).status_code == 201
            publish(service, "msp-noisy", 3)
            publish(service, "msp-quiet", 1)
            dispatcher.start()
            deadline = time.monotonic() + 30  # far below the noisy endpoints' 60 s attempt deadline
            while not fast.paths:
                assert time.monotonic() < deadline, "the quiet organisation was starved"
                time.sleep(0.02)
            held = slow.holding
            slow.release.set()
        assert fast.paths == ["/q"]
        assert held <= 2 and slow.most_held <= 2  # the noisy organisation never held more than its share
    finally:
        stop.set()
        dispatcher.join(timeout=30)
        service.runtime.close()


# --- rate limits on a real service -------------------------------------------------------------------


def test_rate_limits_are_on_when_set_even_in_the_test_environment(tmp_path):
    service = _service(tmp_path, rate_limit_per_organisation="5/minute")
    try:
        client = TestClient(service.app)
        noisy, quiet = auth(service, "msp-noisy"), auth(service, "msp-quiet")
        statuses = [client.get("/notifications/feed", headers=noisy).status_code for _ in range(6)]
        assert statuses == [200] * 5 + [429]
        refused = client.get("/notifications/feed", headers=noisy)
        assert int(refused.headers["Retry-After"]) >= 1
        outcome(refused, 429)
        assert client.get("/notifications/feed", headers=quiet).status_code == 200
    finally:
        service.runtime.close()
