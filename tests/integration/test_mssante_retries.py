"""The mail channel when the operator misbehaves: a server that refuses for a while (451) then accepts gives
exactly one mail; one that always refuses ends in a dead letter; a plain server is refused outside development;
a server or a mailbox that never answers costs one bounded attempt, never the worker. The refusing peer is
aiosmtpd over STARTTLS (GreenMail cannot refuse temporarily); the silent one a bare loopback socket."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from fastapi.testclient import TestClient

from services.notifications.bootstrap import bootstrap
from services.notifications.mssante.mailbox import ReceiptReader
from services.notifications.mssante.message import message_id
from services.notifications.mssante.transport import server
from shared.settings import NotificationsSettings
from tests.infra.brokers import free_port
from tests.infra.greenmail import make_certificate
from tests.infra.wait import wait_for
from tests.unit.test_notifications_service import publish

RELAIS = "relais@relais.mssante.fr"
TEAM, ADDRESS = "msp-lilas", "secretariat@msp-lilas.mssante.fr"


class Operator:
    """An SMTP peer refusing the first `refusals` mails (451 unless told), then answering 250."""

    def __init__(self, refusals: int, refusal: str = "451 4.3.0 Mailbox busy, try again later") -> None:
        self.refusals = refusals
        self.refusal = refusal
        self.attempts = 0
        self.accepted: list[bytes] = []
        self.over_tls: list[bool] = []

    async def handle_DATA(self, server, session, envelope) -> str:
        self.attempts += 1
        self.over_tls.append(session.ssl is not None)
        if self.refusals > 0:
            self.refusals -= 1
            return self.refusal
        self.accepted.append(envelope.content)
        return "250 2.0.0 OK"


class Silent:
    """Accepts connections and never says a word (a server or mailbox answering too slowly)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.accepted:
            conn.close()


@pytest.fixture
def certificate(tmp_path):
    return make_certificate(tmp_path)


def start_operator(certificate, refusals: int, tls: bool = True, client_ca: Path | None = None,
                   **options_: str) -> tuple[Operator, Controller]:
    cert, key = certificate
    handler = Operator(refusals, **options_)
    options: dict = {}
    if tls:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        if client_ca is not None:  # an operator that authenticates applications by certificate
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(cafile=str(client_ca))
        options = {"tls_context": context, "require_starttls": True}
    controller = Controller(handler, hostname="127.0.0.1", port=free_port(), **options)
    controller.start()
    return handler, controller


@pytest.fixture
def services(tmp_path) -> Iterator[list]:
    built: list = []
    yield built
    for service in built:
        service.runtime.close()


def mail_service(tmp_path, services, port: int, certificate, **overrides):
    # The SMTP deadline is the production-like 10 s unless a test is about deadlines: with 1 s, a loaded machine
    # made the in-process operator's EHLO answer late and a TLS refusal read as a timeout.
    chosen = {"mssante_timeout_seconds": 10.0, **overrides}
    settings = NotificationsSettings(
        environment="test", data_dir=tmp_path, mssante_smtp_url=f"smtp://127.0.0.1:{port}", mssante_sender=RELAIS,
        mssante_ca_file=str(certificate[0]), webhook_backoff_base_seconds=0.01,
        webhook_backoff_max_seconds=0.02, **chosen,
    )
    service = bootstrap(settings, run_workers=False)
    services.append(service)
    team_token = service.runtime.directory.add("team", TEAM, "MSP des Lilas", mssante=ADDRESS)
    service.app.state.team_headers = {"Authorization": f"Bearer {team_token}"}
    return service


def mail_deliveries(service) -> list[dict]:
    client = TestClient(service.app)
    answer = client.get("/notifications/webhooks/deliveries", headers=service.app.state.team_headers)
    return [d for d in answer.json() if d["target"]["kind"] == "mssante"]


def test_an_operator_refusing_for_a_while_then_accepting_gets_exactly_one_mail(tmp_path, services, certificate):
    operator, controller = start_operator(certificate, refusals=2)
    try:
        service = mail_service(tmp_path, services, controller.port, certificate)
        (sent,) = publish(service, TEAM)
        dispatcher = service.app.state.dispatcher

        def delivered() -> bool:
            dispatcher.run_due()
            return mail_deliveries(service)[0]["state"] == "delivered"

        wait_for(delivered, 20, 0.02, "the mail accepted after the refusals")
        for _ in range(5):
            dispatcher.run_due()
        assert operator.attempts == 3 and len(operator.accepted) == 1 and all(operator.over_tls)
        assert message_id(sent, ADDRESS, RELAIS).encode() in operator.accepted[0]
        assert mail_deliveries(service)[0]["attempts"] == 3
    finally:
        controller.stop()


def test_an_operator_refusing_every_time_leaves_a_dead_letter_visible_to_the_team(tmp_path, services, certificate):
    operator, controller = start_operator(certificate, refusals=1000)
    try:
        service = mail_service(tmp_path, services, controller.port, certificate, webhook_max_attempts=3)
        publish(service, TEAM)
        dispatcher = service.app.state.dispatcher

        def dead() -> dict | None:
            dispatcher.run_due()
            (delivery,) = mail_deliveries(service)
            return delivery if delivery["state"] == "dead" else None

        letter = wait_for(dead, 20, 0.02, "the dead letter")
        assert letter["last_status"] == 451 and letter["last_error"] == "smtp_451" and operator.accepted == []
        assert operator.attempts == 3
    finally:
        controller.stop()


def test_a_permanent_refusal_is_a_dead_letter_at_once(tmp_path, services, certificate):
    operator, controller = start_operator(certificate, refusals=1000, refusal="550 5.1.1 mailbox unknown")
    try:
        service = mail_service(tmp_path, services, controller.port, certificate)
        publish(service, TEAM)
        (attempt,) = service.app.state.dispatcher.run_due()
        assert attempt.status == 550 and attempt.permanent
        (letter,) = mail_deliveries(service)
        assert letter["state"] == "dead" and letter["attempts"] == 1 and letter["last_error"] == "smtp_550"
        assert service.app.state.dispatcher.run_due() == [] and operator.attempts == 1
    finally:
        controller.stop()


def test_relais_presents_its_client_certificate_to_an_operator_that_requires_one(tmp_path, services, certificate):
    client_cert, client_key = make_certificate(tmp_path, "relais-client")
    operator, controller = start_operator(certificate, refusals=0, client_ca=client_cert)
    try:
        anonymous = mail_service(tmp_path / "anonymous", services, controller.port, certificate)
        publish(anonymous, TEAM)
        (attempt,) = anonymous.app.state.dispatcher.run_due()
        assert not attempt.ok and operator.accepted == []
        known = mail_service(tmp_path / "known", services, controller.port, certificate,
                             mssante_cert_file=str(client_cert), mssante_key_file=str(client_key))
        publish(known, TEAM)
        (attempt,) = known.app.state.dispatcher.run_due()
        assert attempt.ok and len(operator.accepted) == 1
    finally:
        controller.stop()


@pytest.mark.attack
def test_a_plain_operator_is_refused_outside_development(tmp_path, services, certificate):
    operator, controller = start_operator(certificate, refusals=0, tls=False)
    try:
        service = mail_service(tmp_path, services, controller.port, certificate)
        publish(service, TEAM)
        (attempt,) = service.app.state.dispatcher.run_due()
        assert not attempt.ok and attempt.error == "tls_unavailable"
        assert operator.attempts == 0
    finally:
        controller.stop()


@pytest.mark.attack
def test_a_silent_operator_costs_one_bounded_attempt(tmp_path, services, certificate):
    silent = Silent()
    try:
        service = mail_service(tmp_path, services, silent.port, certificate, mssante_timeout_seconds=1.0)
        publish(service, TEAM)
        started = time.monotonic()
        (attempt,) = service.app.state.dispatcher.run_due()
        assert attempt.error == "timeout" and time.monotonic() - started < 5
        assert mail_deliveries(service)[0]["state"] == "pending"  # retried later
    finally:
        silent.close()


@pytest.mark.attack
def test_a_silent_mailbox_never_stops_the_receipt_reader(tmp_path, certificate):
    silent = Silent()
    settings = NotificationsSettings(environment="test", data_dir=tmp_path, mssante_timeout_seconds=0.5,
                                     mssante_ca_file=str(certificate[0]))
    offered: list[object] = []
    reader = ReceiptReader(server(f"imaps://relais:pw@127.0.0.1:{silent.port}", "IMAP", settings, "imap"),
                           offered.append, interval=0.05)
    stop = threading.Event()
    worker = threading.Thread(target=reader.run, args=(stop,), daemon=True)
    try:
        worker.start()
        wait_for(lambda: len(silent.accepted) >= 3, 20, 0.05, "the reader polling again after timeouts")
        assert worker.is_alive() and offered == []
    finally:
        stop.set()
        worker.join(timeout=5)
        silent.close()
    assert not worker.is_alive()
