"""Liveness from its own process (shared/api/liveness.py): fresh heartbeat 200, stale 503, gone with its service."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import httpx
import pytest

from shared.api.liveness import Liveness, liveness_answer
from tests.infra.brokers import REPO_ROOT, free_port
from tests.infra.wait import wait_for


@pytest.mark.parametrize(("age", "status"), [(0.0, 200), (9.9, 200), (10.1, 503), (-5.0, 200)])
def test_the_probe_answers_from_the_age_of_the_heartbeat(age, status):
    code, body = liveness_answer("admissions", beat_at=1000.0, now=1000.0 + age, stale_after=10.0)
    assert code == status
    assert body["service"] == "admissions" and body["status"] == ("ok" if status == 200 else "stuck")
    assert body["heartbeat_age_seconds"] >= 0


def _status(url: str) -> int | None:
    try:
        return httpx.get(url, timeout=1).status_code
    except httpx.TransportError:
        return None


def test_the_probe_process_is_alive_while_the_loop_beats_and_stuck_when_it_stops():
    port = free_port()
    liveness = Liveness("discharge", "127.0.0.1", port, stale_after=0.5)
    liveness.start()
    url = f"http://127.0.0.1:{port}/healthz"
    try:
        liveness.beat()
        assert wait_for(lambda: _status(url) == 200, 30, 0.05, "the probe process to answer")
        assert httpx.get(url).json()["service"] == "discharge"
        # No beat (a stuck event loop): the probe says so once the heartbeat is older than stale_after.
        assert wait_for(lambda: _status(url) == 503, 10, 0.05, "the probe to see the stale heartbeat")
        liveness.beat()
        assert _status(url) == 200
    finally:
        liveness.stop()
    assert wait_for(lambda: _status(url) is None, 10, 0.05, "the probe to stop with its service")


def test_the_probe_process_exits_when_its_service_is_killed(tmp_path):
    port = free_port()
    script = (
        "import asyncio\n"
        "from shared.api.liveness import Liveness\n"
        f"liveness = Liveness('snp', '127.0.0.1', {port}, stale_after=5)\n"
        "liveness.start()\n"
        "asyncio.run(liveness.keep_beating())  # what a service's event loop runs\n"
    )
    service = subprocess.Popen([sys.executable, "-c", script], cwd=REPO_ROOT, start_new_session=True,
                               env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    url = f"http://127.0.0.1:{port}/healthz"
    try:
        assert wait_for(lambda: _status(url) == 200, 30, 0.05, "the probe of the service")
        service.send_signal(signal.SIGKILL)  # the probe process is not in the kill: only its parent dies
        service.wait(timeout=10)
        assert wait_for(lambda: _status(url) is None, 15, 0.1, "the orphaned probe to exit")
    finally:
        if service.poll() is None:
            service.kill()


def test_relais_serve_answers_liveness_on_its_own_port_while_it_serves(tmp_path):
    port, liveness_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RELAIS_", "KAFKA_"))}
    env.update(RELAIS_DATA_DIR=str(tmp_path), RELAIS_LIVENESS_PORT=str(liveness_port), RELAIS_ENVIRONMENT="test")
    relais = os.path.join(os.path.dirname(sys.executable), "relais")
    log = open(tmp_path / "serve.log", "wb")
    process = subprocess.Popen([relais, "serve", "admissions", "--port", str(port)], cwd=tmp_path, env=env,
                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        served = wait_for(lambda: _status(f"http://127.0.0.1:{port}/admissions/healthz") == 200, 60, 0.1,
                          lambda: (tmp_path / "serve.log").read_text()[-2000:])
        assert served
        answer = httpx.get(f"http://127.0.0.1:{liveness_port}/healthz", timeout=2)
        assert answer.status_code == 200 and answer.json()["service"] == "admissions"
        assert answer.json()["heartbeat_age_seconds"] < 5
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)
        log.close()
    assert wait_for(lambda: _status(f"http://127.0.0.1:{liveness_port}/healthz") is None, 15, 0.1,
                    "the liveness process to stop with relais serve")


def test_a_liveness_port_already_taken_stops_the_start_with_a_clear_error():
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        liveness = Liveness("notifications", "127.0.0.1", taken.getsockname()[1], stale_after=5)
        with pytest.raises(RuntimeError, match="could not listen"):
            liveness.start()
