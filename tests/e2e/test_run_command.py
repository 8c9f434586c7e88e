"""The README's run command: `relais run` starts every service on SQLite and the embedded log."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.infra.brokers import free_port
from tests.infra.wait import wait_for

SERVICES = ("admissions", "discharge", "snp", "notifications")


@pytest.fixture
def relais_run(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RELAIS_", "KAFKA_"))}
    relais = shutil.which("relais", path=str(Path(sys.executable).parent)) or "relais"
    log = open(tmp_path / "relais.log", "wb")
    process = subprocess.Popen(
        [relais, "run", "--port", str(port), "--data-dir", str(tmp_path / "data")],
        cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        yield f"http://127.0.0.1:{port}", tmp_path, process
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        log.close()


def test_relais_run_serves_every_service_on_the_embedded_default(relais_run):
    base, tmp_path, process = relais_run

    def healthy():
        assert process.poll() is None, (tmp_path / "relais.log").read_text()[-3000:]
        return httpx.get(f"{base}/healthz", timeout=2).status_code == 200

    wait_for(healthy, timeout=60, message=lambda: (tmp_path / "relais.log").read_text()[-3000:])
    assert httpx.get(f"{base}/healthz").json()["services"] == list(SERVICES)
    for service in SERVICES:
        assert httpx.get(f"{base}/{service}/healthz").json()["service"] == service
        ready = httpx.get(f"{base}/{service}/readyz").json()
        assert ready["checks"] == {"database": True, "workers": True, "bus": True}
        assert httpx.get(f"{base}/{service}/openapi.json").status_code == 200
    # SQLite files, one per service, plus the embedded log and the directory: no server anywhere.
    files = sorted(path.name for path in (tmp_path / "data").glob("*.sqlite"))
    assert files == sorted([f"{name}.sqlite" for name in SERVICES] + ["auth.sqlite", "bus.sqlite"])
