"""Relais in this process for the demo, as `relais run` serves it, on a free loopback port."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from relais.demo.client import wait_until


def _free_socket(port: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    return sock


@contextmanager
def embedded_relais(data_dir: Path, startup_timeout: float = 120.0, port: int = 0) -> Iterator[tuple[str, Any]]:
    """Every service in this process (as `relais run`), served by uvicorn in a thread on a free loopback port.

    Configuration comes from the environment like `relais run`: SQLite and the embedded log under
    `data_dir` unless RELAIS_*_DATABASE_URL / KAFKA_BOOTSTRAP_SERVERS say otherwise.
    """
    import uvicorn

    from relais.combined import combined_app
    from relais.services import SERVICE_NAMES, bootstrapper
    from shared.auth import Directory
    from shared.settings import RelaisSettings

    data_dir.mkdir(parents=True, exist_ok=True)
    os.environ["RELAIS_DATA_DIR"] = str(data_dir)
    settings = RelaisSettings()
    directory = Directory(settings.resolved_auth_url, settings.auth_database_schema)
    services = [bootstrapper(name)(directory=directory) for name in SERVICE_NAMES]
    sock = _free_socket(port)  # 0: a free one
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(combined_app(services), host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="relais-demo-http", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: server.started and httpx.get(f"{url}/healthz", timeout=2).status_code == 200,
            startup_timeout,
            lambda: f"Relais on {url} to answer /healthz",
        )
        yield url, directory
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
        for service in services:
            service.runtime.close()
        directory.close()
