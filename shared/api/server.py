"""Serving an app with uvicorn, with a deadline for request headers (uvicorn has none of its own).

A client that opens a connection and trickles its request line and headers would otherwise hold the
connection for as long as it likes; the body has its own deadline in `RequestGuard`.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from shared.api.liveness import Liveness

# Largest request head (request line + headers) accepted; h11 answers 400 past it.
MAX_HEADER_BYTES = 16_384


class HeaderDeadlineProtocol(H11Protocol):
    """h11 protocol that closes a connection whose request head is not complete within `header_timeout`."""

    header_timeout: float = 10.0
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._cancel_header_timer()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def _arm_header_timer(self) -> None:
        self._cancel_header_timer()
        self._header_timer = self.loop.call_later(self.header_timeout, self._header_timed_out)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timed_out(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self.transport.close()


def protocol_with_header_timeout(seconds: float) -> type[HeaderDeadlineProtocol]:
    return type("HeaderDeadlineProtocol", (HeaderDeadlineProtocol,), {"header_timeout": seconds})


def server_config(app: Any, *, host: str, port: int, settings: Any, log_level: str = "warning") -> uvicorn.Config:
    """The uvicorn configuration every Relais entry point uses (relais run, relais serve, tests)."""
    trusted_proxies = list(getattr(settings, "trusted_proxies", None) or [])
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=protocol_with_header_timeout(settings.http_header_timeout_seconds),
        h11_max_incomplete_event_size=MAX_HEADER_BYTES,
        timeout_keep_alive=5,
        log_level=log_level,
        # Forwarded headers rewrite the client address that throttling keys on: only from listed proxies.
        proxy_headers=bool(trusted_proxies),
        forwarded_allow_ips=",".join(trusted_proxies) or None,
    )


def run_server(app: Any, *, host: str, port: int, settings: Any, log_level: str = "warning") -> None:
    server = uvicorn.Server(server_config(app, host=host, port=port, settings=settings, log_level=log_level))
    liveness_port = getattr(settings, "liveness_port", None)
    if not liveness_port:
        server.run()
        return
    # Liveness from another process (shared/api/liveness.py): a service busy parsing must not look dead.
    liveness = Liveness(getattr(settings, "service", "relais"), host, liveness_port, settings.liveness_stale_seconds)
    liveness.start()
    try:
        asyncio.run(serve_beating(server, liveness))
    finally:
        liveness.stop()


async def serve_beating(server: uvicorn.Server, liveness: Liveness, sockets: list[socket.socket] | None = None) -> None:
    """`server.serve()` while the event loop writes the liveness heartbeat."""
    beating = asyncio.create_task(liveness.keep_beating())
    try:
        await server.serve(sockets=sockets)
    finally:
        beating.cancel()


def bound_socket(host: str = "127.0.0.1") -> socket.socket:
    """A listening socket on a free port (tests hand it to `uvicorn.Server.run(sockets=[...])`)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    return sock
