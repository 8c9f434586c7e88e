"""The four services as separate processes (`relais serve`) on one PostgreSQL and one Kafka-protocol broker.

One database per harness, one schema per service (`admissions`, `discharge`, `snp`, `notifications`) plus
`auth` for the shared organisation directory, which the harness also opens directly to register
organisations (as `relais org add` does). Each service runs in its own process group with its log in
`<workdir>/<service>.log`; `kill(service)` is a SIGKILL (a crash), `start(service)` brings it back on
the same port and waits for `/readyz`.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
import uuid
from collections.abc import Iterable
from pathlib import Path

import httpx

from shared.auth import Directory
from shared.events import Role
from tests.infra.brokers import ManagedProcess, free_port, log_tail
from tests.infra.wait import wait_for

SERVICES = ("admissions", "discharge", "snp", "notifications")
SECRET = "relais-e2e-secret-0123456789abcdef0123456789"


def relais_executable() -> str:
    return shutil.which("relais", path=str(Path(sys.executable).parent)) or "relais"


def clean_environment() -> dict[str, str]:
    """The test process's environment without any Relais or Kafka setting (each service gets its own)."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("RELAIS_", "KAFKA_"))}


class ServiceProcess:
    """One `relais serve SERVICE` process on a fixed loopback port."""

    def __init__(self, name: str, port: int, env: dict[str, str], workdir: Path) -> None:
        self.name = name
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.process = ManagedProcess(
            name,
            [relais_executable(), "serve", name, "--port", str(port)],
            workdir / f"{name}.log",
            cwd=workdir,
            env=env,
        )

    @property
    def log_path(self) -> Path:
        return self.process.log_path

    @property
    def alive(self) -> bool:
        return self.process.alive

    def spawn(self) -> None:
        self.process.spawn()

    def ready(self) -> bool:
        self.process.check_alive()
        response = httpx.get(f"{self.url}/{self.name}/readyz", timeout=2)
        return response.status_code == 200

    def wait_ready(self, timeout: float = 90.0) -> None:
        wait_for(
            self.ready,
            timeout=timeout,
            interval=0.1,
            message=lambda: f"{self.name} on {self.url} to be ready; log tail:\n{log_tail(self.log_path)}",
        )

    def kill(self) -> None:
        self.process.kill()

    def terminate(self) -> None:
        self.process.terminate(timeout=20)


class RelaisProcesses:
    """Services as processes on `postgres` (a tests.infra PostgresServer) and `broker` (Tansu or Kafka 0.9)."""

    def __init__(
        self,
        postgres,
        broker,
        workdir: Path,
        services: Iterable[str] = SERVICES,
        *,
        session_timeout_ms: int = 2000,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.database_url = postgres.create_database(f"e2e_{uuid.uuid4().hex[:12]}")
        self.broker = broker
        # The directory's table exists before any service starts: four processes racing to create it could fail.
        self.directory = Directory(self.database_url, "auth")
        env = clean_environment()
        env.update(
            {
                "RELAIS_ENVIRONMENT": "test",
                "RELAIS_SECRET_KEY": SECRET,
                "RELAIS_DATA_DIR": str(self.workdir / "data"),
                "RELAIS_AUTH_DATABASE_URL": self.database_url,
                "RELAIS_AUTH_DATABASE_SCHEMA": "auth",
                "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
                "RELAIS_KAFKA_SESSION_TIMEOUT_MS": str(session_timeout_ms),
                "RELAIS_CONSUMER_GROUP_PREFIX": f"relais-e2e-{uuid.uuid4().hex[:8]}",
                "RELAIS_LOG_LEVEL": "WARNING",
                "PYTHONUNBUFFERED": "1",
            }
        )
        if broker.api_version is not None:
            env["RELAIS_KAFKA_API_VERSION"] = ".".join(map(str, broker.api_version))
        for name in SERVICES:
            env[f"RELAIS_{name.upper()}_DATABASE_URL"] = self.database_url
            env[f"RELAIS_{name.upper()}_DATABASE_SCHEMA"] = name
        env.update(extra_env or {})
        self.env = env
        self.services = {name: ServiceProcess(name, free_port(), env, self.workdir) for name in services}
        self.start_seconds: float | None = None

    # --- lifecycle ---------------------------------------------------------------------------------------

    def start(self, timeout: float = 120.0) -> RelaisProcesses:
        began = time.monotonic()
        for service in self.services.values():
            service.spawn()
        for service in self.services.values():
            service.wait_ready(timeout)
        self.start_seconds = time.monotonic() - began
        return self

    def kill(self, name: str) -> None:
        """SIGKILL the service's process group: no shutdown, no flush, no offset commit."""
        self.services[name].kill()

    def start_service(self, name: str, timeout: float = 90.0) -> None:
        self.services[name].spawn()
        self.services[name].wait_ready(timeout)

    def restart(self, name: str) -> None:
        self.kill(name)
        self.start_service(name)

    def close(self) -> None:
        for service in self.services.values():
            service.terminate()
        self.directory.close()

    def __enter__(self) -> RelaisProcesses:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # --- access --------------------------------------------------------------------------------------------

    @property
    def urls(self) -> dict[str, str]:
        return {name: service.url for name, service in self.services.items()}

    def url(self, name: str) -> str:
        return self.services[name].url

    def register(self, role: Role | str, organisation_id: str, name: str) -> str:
        """Register an organisation in the shared auth database; its bearer token."""
        return self.directory.add(role, organisation_id, name)

    def logs(self) -> str:
        return "\n".join(f"--- {n}\n{log_tail(s.log_path, 30)}" for n, s in self.services.items())
