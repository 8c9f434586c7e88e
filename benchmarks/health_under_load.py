"""`/healthz` latency on an idle server, then while large valid admissions are posted from several connections.

A liveness probe that times out under load gets a healthy pod killed: parsing must stay off the event loop.
Run: .venv/bin/python benchmarks/health_under_load.py [SECONDS] [CONNECTIONS] [CONDITIONS]
(loopback only, bounded; prints p50/p99 in milliseconds; not a test)
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx
import uvicorn

from services.admissions.bootstrap import bootstrap
from shared.api.server import bound_socket, server_config
from shared.settings import AdmissionsSettings
from tests import factories as f


def _large_admission(conditions: int) -> bytes:
    bundle = f.admission_message()
    kinds = {e["resource"]["resourceType"]: e["resource"] for e in bundle["entry"]}
    kinds["Encounter"]["identifier"][0]["value"] = f"NDA-{uuid.uuid4().hex[:12]}"
    patient, encounter = f"Patient/{kinds['Patient']['id']}", f"Encounter/{kinds['Encounter']['id']}"
    for _ in range(conditions):
        resource = f.condition(patient_ref=patient, encounter_ref=encounter)
        bundle["entry"].append({"fullUrl": f"urn:uuid:{resource['id']}", "resource": resource})
    return f.body(bundle)


def _probe(url: str, seconds: float) -> list[float]:
    latencies: list[float] = []
    deadline = time.monotonic() + seconds
    with httpx.Client(timeout=30) as client:
        while time.monotonic() < deadline:
            started = time.perf_counter()
            client.get(url).raise_for_status()
            latencies.append((time.perf_counter() - started) * 1000)
            time.sleep(0.05)
    return latencies


def _summary(name: str, latencies: list[float]) -> str:
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    median = statistics.median(ordered)
    return f"{name:>10}: n={len(ordered)} p50={median:.1f} ms p99={p99:.1f} ms max={ordered[-1]:.1f} ms"


def main(seconds: float = 20.0, connections: int = 4, conditions: int = 900) -> None:
    with tempfile.TemporaryDirectory() as data_dir:
        service = bootstrap(AdmissionsSettings(environment="test", data_dir=Path(data_dir)), run_workers=True)
        token = service.runtime.directory.add("hospital", f.DEFAULT_FINESS, "CHU Exemple")
        bodies = [_large_admission(conditions) for _ in range(connections * 4)]
        sock = bound_socket()
        port = sock.getsockname()[1]
        config = server_config(service.app, host="127.0.0.1", port=port, settings=service.runtime.settings)
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.02)
        base = f"http://127.0.0.1:{port}"
        try:
            idle = _probe(f"{base}/admissions/healthz", min(seconds, 10.0))
            stop = threading.Event()
            posted: list[int] = []

            def load(index: int) -> None:
                headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"}
                with httpx.Client(timeout=120) as client:
                    n = 0
                    while not stop.is_set():
                        body = bodies[(index + n * connections) % len(bodies)]
                        posted.append(client.post(f"{base}/admissions/fhir/$process-message", content=body,
                                                  headers=headers).status_code)
                        n += 1

            loaders = [threading.Thread(target=load, args=(i,), daemon=True) for i in range(connections)]
            for loader in loaders:
                loader.start()
            loaded = _probe(f"{base}/admissions/healthz", seconds)
            stop.set()
            for loader in loaders:
                loader.join(timeout=120)
            print(f"body {len(bodies[0]):,} bytes, {conditions + 5} entries, {connections} connections")
            print(_summary("idle", idle))
            print(_summary("under load", loaded))
            print(f"posted {len(posted)} admissions, statuses {sorted(set(posted))}")
        finally:
            server.should_exit = True
            thread.join(timeout=30)
            sock.close()
            service.runtime.close()


if __name__ == "__main__":
    args = sys.argv[1:]
    main(float(args[0]) if args else 20.0, int(args[1]) if len(args) > 1 else 4,
         int(args[2]) if len(args) > 2 else 900)
