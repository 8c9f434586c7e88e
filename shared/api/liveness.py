"""Liveness answered by a separate process, so that a busy service never looks dead.

Validating a large FHIR Bundle is CPU work that holds the interpreter lock for a few hundred milliseconds at a
time (one pydantic call for a 900-entry Bundle), and every endpoint of that process waits meanwhile, `/healthz`
included: a liveness probe that times out under load gets a healthy pod restarted. With `RELAIS_LIVENESS_PORT`
set, `relais serve` starts a small process (no FastAPI, no database, its own interpreter lock) that answers
`GET /healthz` on that port from a heartbeat the service's event loop writes into shared memory every
`HEARTBEAT_SECONDS`: 200 while the heartbeat is fresh, 503 once it is older than `RELAIS_LIVENESS_STALE_SECONDS`
(the loop is stuck: restarting is right). The process exits when the service does, even after a SIGKILL.
A connection that does not send its request within `READ_TIMEOUT_SECONDS` is closed, and at most
`MAX_CONNECTIONS` are served at once (one thread each): a flood of half-open connections closes on its own and
never grows the process.

Written on the standard library (`http.server`, `multiprocessing`): it must start in milliseconds and import
nothing of Relais' stack.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HEARTBEAT_SECONDS = 0.5
READ_TIMEOUT_SECONDS = 2.0  # a probe sends its few bytes at once: anything slower is not a probe
MAX_CONNECTIONS = 32


def heartbeat_age(beat_at: float, now: float) -> float:
    return max(0.0, now - beat_at)


def liveness_answer(service: str, beat_at: float, now: float, stale_after: float) -> tuple[int, dict[str, Any]]:
    """The probe's status and body: 200 while the service's event loop has beaten within `stale_after` seconds."""
    age = heartbeat_age(beat_at, now)
    alive = age <= stale_after
    body = {"status": "ok" if alive else "stuck", "service": service, "heartbeat_age_seconds": round(age, 3)}
    return (200 if alive else 503), body


@dataclass
class Liveness:
    """The service side: the shared heartbeat and the probe process."""

    service: str
    host: str
    port: int
    stale_after: float
    _beat: Any = None
    _process: Any = None

    def start(self) -> None:
        context = multiprocessing.get_context("spawn")  # never fork a process that already runs threads
        self._beat = context.Value("d", time.time(), lock=False)
        listening = context.Event()
        self._process = context.Process(
            target=serve_probe,
            args=(self.host, self.port, self.service, self._beat, self.stale_after, os.getpid(), listening),
            name=f"relais-{self.service}-liveness",
            daemon=True,
        )
        self._process.start()
        # The service starts answering only once its liveness does (a probe never finds the port closed).
        deadline = time.monotonic() + 30
        while not listening.wait(timeout=0.05):
            if not self._process.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the liveness probe could not listen on {self.host}:{self.port}")

    def beat(self) -> None:
        self._beat.value = time.time()

    async def keep_beating(self) -> None:
        while True:
            self.beat()
            await asyncio.sleep(HEARTBEAT_SECONDS)

    def stop(self) -> None:
        if self._process is not None and self._process.is_alive():
            self._process.terminate()
            self._process.join(timeout=5)


class BoundedServer(ThreadingHTTPServer):
    """One thread per connection, at most `max_connections` at a time; one over the cap is closed at once."""

    daemon_threads = True
    request_queue_size = 128  # the listen backlog: a burst waits in the kernel, not in SYN retries

    def __init__(self, address: tuple[str, int], handler: Any, max_connections: int = MAX_CONNECTIONS) -> None:
        super().__init__(address, handler)
        self._slots = threading.BoundedSemaphore(max_connections)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)  # never queued: a flood cannot hold the probe's threads
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


def serve_probe(
    host: str, port: int, service: str, beat: Any, stale_after: float, parent_pid: int, listening: Any
) -> None:
    """The probe process: answers every GET from the heartbeat until its parent is gone."""

    class Probe(BaseHTTPRequestHandler):
        timeout = READ_TIMEOUT_SECONDS  # set on the socket before the request line is read

        def do_GET(self) -> None:
            status, body = liveness_answer(service, beat.value, time.time(), stale_after)
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            return  # probes every few seconds would flood the log

    server = BoundedServer((host, port), Probe)

    def orphaned() -> None:
        # Re-parented (the service died, even by SIGKILL): nobody is left to be alive.
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        server.shutdown()

    threading.Thread(target=orphaned, daemon=True).start()
    listening.set()
    server.serve_forever(poll_interval=0.5)
