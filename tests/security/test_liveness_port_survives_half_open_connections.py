"""Issue 19 item 10: the liveness port made one thread per connection and waited for ever for a request line,
so 200 connections that send nothing stayed open (200 threads in the probe process). Now each is closed after
the read timeout, at most MAX_CONNECTIONS are served at once (the rest closed at once), and the probe answers
again as soon as the flood is gone."""

from __future__ import annotations

import socket
import time

import httpx
import pytest

from shared.api.liveness import MAX_CONNECTIONS, READ_TIMEOUT_SECONDS, Liveness
from tests.infra.brokers import free_port
from tests.infra.wait import wait_for

pytestmark = pytest.mark.attack

FLOOD = 200


def _closed_by_peer(sock: socket.socket) -> bool:
    """True once the server has closed its side (EOF or reset); False while it still holds it open."""
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def _status(url: str) -> int | None:
    try:
        return httpx.get(url, timeout=1).status_code
    except httpx.TransportError:
        return None


def test_two_hundred_half_open_connections_are_closed_and_the_probe_answers_again():
    port = free_port()
    liveness = Liveness("notifications", "127.0.0.1", port, stale_after=30)
    liveness.start()
    url = f"http://127.0.0.1:{port}/healthz"
    flood: list[socket.socket] = []
    try:
        liveness.beat()
        assert wait_for(lambda: _status(url) == 200, 30, 0.05, "the probe to answer")
        for _ in range(FLOOD):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(b"GET /hea")  # a request line that never ends
            sock.setblocking(False)
            flood.append(sock)
        started = time.monotonic()
        # Beyond the cap they are closed at once; the others once the read timeout has passed.
        assert wait_for(lambda: sum(_closed_by_peer(s) for s in flood) >= FLOOD - MAX_CONNECTIONS, 5, 0.05,
                        "connections over the cap closed at once")
        open_after_cap = sum(not _closed_by_peer(s) for s in flood)
        assert open_after_cap <= MAX_CONNECTIONS
        wait_for(lambda: all(_closed_by_peer(s) for s in flood), READ_TIMEOUT_SECONDS + 10, 0.05,
                 "every half-open connection closed by the read timeout")
        assert time.monotonic() - started < READ_TIMEOUT_SECONDS + 10
        liveness.beat()
        assert wait_for(lambda: _status(url) == 200, 10, 0.05, "the probe to answer after the flood")
    finally:
        for sock in flood:
            sock.close()
        liveness.stop()
