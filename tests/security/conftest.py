"""A kernel-only service app (the app factory, auth, a FHIR intake route) and a live loopback server."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
import uvicorn
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.testclient import TestClient

from shared.api.app import create_service_app
from shared.api.limits import RateLimits, RequestLimits
from shared.api.server import bound_socket, server_config
from shared.auth import Directory, Principal, current_principal
from shared.events import Role
from shared.fhir.intake import parse_message_bundle
from shared.settings import RelaisSettings

PROCESS = "/kernel/fhir/$process-message"


@dataclass
class KernelApp:
    app: FastAPI
    directory: Directory
    tokens: dict[str, str]

    def client(self, org: str = "hospital") -> TestClient:
        client = TestClient(self.app)
        client.headers["Authorization"] = f"Bearer {self.tokens[org]}"
        return client


def build_app(tmp_path, limits: RequestLimits | None = None, rate_limits: RateLimits | None = None) -> KernelApp:
    limits = limits or RequestLimits()
    router = APIRouter(prefix="/kernel")

    @router.post("/fhir/$process-message")
    def process(request_body: bytes = Depends(_body), principal: Principal = Depends(current_principal)):
        # The real intake path: FHIR models parse whatever the guard let through.
        message = parse_message_bundle(request_body, "application/fhir+json", limits.max_body_bytes)
        return {"accepted": message.message_id}

    @router.get("/items/{item_id}")
    def item(item_id: str, principal: Principal = Depends(current_principal)):
        return {"id": item_id}

    @router.post("/explode")
    def explode(principal: Principal = Depends(current_principal)):
        # Built at run time so that the traceback's source line does not hold the value itself.
        raise ValueError("patient NIR " + "".join(["1850578", "00608491"]) + " born " + "-".join(["1985", "05", "12"]))

    app = create_service_app(
        service="kernel", title="kernel", description="security tests", routers=[router], limits=limits,
        rate_limits=rate_limits, ready_checks={"database": lambda: True},
        capability={"resourceType": "CapabilityStatement"},
    )
    directory = Directory(f"sqlite:///{tmp_path / 'auth.sqlite'}")
    app.state.directory = directory
    tokens = {
        "hospital": directory.add(Role.HOSPITAL, "010000001", "CHU"),
        "other": directory.add(Role.HOSPITAL, "010000002", "CH Autre"),
    }
    return KernelApp(app, directory, tokens)


async def _body(request: Request) -> bytes:
    return await request.body()


@pytest.fixture
def kernel(tmp_path) -> Iterator[KernelApp]:
    built = build_app(tmp_path)
    yield built
    built.directory.close()


@contextmanager
def live_server(app: Any, **settings: Any) -> Iterator[int]:
    """Serve `app` on 127.0.0.1 with the production uvicorn configuration; yields the port."""
    sock = bound_socket()
    port = sock.getsockname()[1]
    config = server_config(app, host="127.0.0.1", port=port, settings=RelaisSettings(**settings))
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
