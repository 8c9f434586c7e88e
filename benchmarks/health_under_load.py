"""`/healthz` latency on an idle server, then while large valid admissions are posted from several connections,
beside the liveness port (`RELAIS_LIVENESS_PORT`, answered by another process from the event loop's heartbeat).

A liveness probe that times out under load gets a healthy pod killed: parsing must stay off the event loop, and
the probe must not wait for the interpreter lock the parsing holds. The prober runs in its own process, as a
kubelet would (in the server's process it would wait for that lock too).
Run: PYTHONPATH=. .venv/bin/python benchmarks/health_under_load.py [SECONDS] [CONNECTIONS] [CONDITIONS]
(loopback only, bounded; prints p50/p99 in milliseconds; not a test)
"""

from __future__ import annotations

import asyncio
import multiprocessing
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
from shared.api.liveness import Liveness
from shared.api.server import bound_socket, serve_beating, server_config
from shared.settings import AdmissionsSettings
from tests import factories as f
from tests.infra.brokers import free_port


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


def _p99(latencies: list[float]) -> float:
    ordered = sorted(latencies)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def _summary(name: str, latencies: list[float]) -> str:
    ordered = sorted(latencies)
    median = statistics.median(ordered)
    return f"{name:>24}: n={len(ordered)} p50={median:.1f} ms p99={_p99(latencies):.1f} ms max={ordered[-1]:.1f} ms"


def main(seconds: float = 20.0, connections: int = 4, conditions: int = 900) -> None:
    with tempfile.TemporaryDirectory() as data_dir:
        service = bootstrap(AdmissionsSettings(environment="test", data_dir=Path(data_dir)), run_workers=True)
        token = service.runtime.directory.add("hospital", f.DEFAULT_FINESS, "CHU Exemple")
        bodies = [_large_admission(conditions) for _ in range(connections * 4)]
        sock = bound_socket()
        port = sock.getsockname()[1]
        config = server_config(service.app, host="127.0.0.1", port=port, settings=service.runtime.settings)
        server = uvicorn.Server(config)
        liveness = Liveness("admissions", "127.0.0.1", free_port(), stale_after=10.0)
        liveness.start()
        thread = threading.Thread(target=asyncio.run, args=(serve_beating(server, liveness, [sock]),), daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.02)
        base = f"http://127.0.0.1:{port}"
        live = f"http://127.0.0.1:{liveness.port}/healthz"
        probes = multiprocessing.get_context("spawn").Pool(2)
        try:
            idle = probes.apply(_probe, (f"{base}/admissions/healthz", min(seconds, 10.0)))
            idle_live = probes.apply(_probe, (live, min(seconds, 10.0)))
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
            loaded_async = probes.apply_async(_probe, (f"{base}/admissions/healthz", seconds))
            loaded_live = probes.apply_async(_probe, (live, seconds))
            loaded, live_loaded = loaded_async.get(), loaded_live.get()
            stop.set()
            for loader in loaders:
                loader.join(timeout=120)
            print(f"body {len(bodies[0]):,} bytes, {conditions + 5} entries, {connections} connections")
            print(_summary("/healthz idle", idle))
            print(_summary("/healthz under load", loaded))
            print(_summary("liveness port idle", idle_live))
            print(_summary("liveness port under load", live_loaded))
            print(f"ratio under load / idle, p99: /healthz {_p99(loaded) / _p99(idle):.1f}x, "
                  f"liveness port {_p99(live_loaded) / _p99(idle_live):.1f}x")
            print(f"posted {len(posted)} admissions, statuses {sorted(set(posted))}")
        finally:
            probes.close()
            server.should_exit = True
            thread.join(timeout=30)
            liveness.stop()
            sock.close()
            service.runtime.close()


if __name__ == "__main__":
    args = sys.argv[1:]
    main(float(args[0]) if args else 20.0, int(args[1]) if len(args) > 1 else 4,
         int(args[2]) if len(args) > 2 else 900)
