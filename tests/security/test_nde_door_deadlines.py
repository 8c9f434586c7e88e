"""Issue 19 item 7: the combined NdE declaration door (`POST /nde/fhir/CommunicationRequest` in `relais run`)
has the body deadline (408) and the failed-authentication block of every other door, before anything reads
the body. Served by uvicorn on loopback with the production configuration; the store plays no part."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from relais.combined import combined_app
from services.admissions.bootstrap import bootstrap as admissions_bootstrap
from services.discharge.bootstrap import bootstrap as discharge_bootstrap
from services.notifications.bootstrap import bootstrap as notifications_bootstrap
from shared.auth import Directory
from shared.events import Role
from shared.settings import AdmissionsSettings, DischargeSettings, NotificationsSettings
from tests.security.conftest import live_server

pytestmark = pytest.mark.attack

DECLARATION = "/nde/fhir/CommunicationRequest"
BODY_TIMEOUT = 1.0


@pytest.fixture
def door(tmp_path) -> Iterator[tuple[int, str]]:
    directory = Directory(f"sqlite:///{tmp_path / 'auth.sqlite'}")
    token = directory.add(Role.HOSPITAL, "010000001", "CH Exemple")
    common: dict[str, Any] = {
        "environment": "test", "data_dir": tmp_path, "http_body_timeout_seconds": BODY_TIMEOUT,
        "rate_limit_failed_auth": "3/minute",
    }
    services = [
        admissions_bootstrap(AdmissionsSettings(**common), directory=directory, run_workers=False),
        discharge_bootstrap(DischargeSettings(**common), directory=directory, run_workers=False),
        notifications_bootstrap(NotificationsSettings(**common), directory=directory, run_workers=False),
    ]
    try:
        with live_server(combined_app(services)) as port:
            yield port, token
    finally:
        for service in services:
            service.runtime.close()
        directory.close()


def _send(port: int, token: str | None, declared: int, body: bytes, wait: float = 10.0) -> tuple[bytes, float]:
    """Declare `declared` bytes, send `body`, then read the answer without sending more."""
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    head = (f"POST {DECLARATION} HTTP/1.1\r\nHost: x\r\nContent-Type: application/fhir+json\r\n{auth}"
            f"Content-Length: {declared}\r\n\r\n").encode()
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as conn:
        conn.sendall(head + body)
        data = b""
        try:
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
        except TimeoutError:
            pass
    return data, time.monotonic() - started


@pytest.mark.parametrize("with_token", [True, False], ids=["valid-token", "no-token"])
def test_a_declaration_that_never_sends_its_body_gets_a_408(door, with_token):
    port, token = door
    answer, elapsed = _send(port, token if with_token else None, 1000, b'{"res')
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert elapsed < BODY_TIMEOUT + 5


def test_a_blocked_address_is_refused_at_the_nde_door_before_its_body_is_read(door):
    port, _ = door
    for _ in range(3):
        answer, _ = _send(port, "rls_wrong", 2, b"{}")
        assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
    # Blocked now: a 429, not the 408 that reading the body it will never get would end in.
    answer, _ = _send(port, "rls_wrong", 1000, b"{")
    assert answer.startswith(b"HTTP/1.1 429"), answer[:200]
    assert b"retry-after" in answer.lower()
