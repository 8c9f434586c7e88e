"""`/healthz` and a team's feed read, idle and then while 1,000-entry admissions are posted from four connections,
in the embedded mode (`relais run`: every service in one process, SQLite and the embedded log), beside the
liveness port (`RELAIS_LIVENESS_PORT`, answered by another process from the event loop's heartbeat: not the figure).

A liveness probe that times out under load gets a healthy pod killed: parsing must stay off the event loop, and
the probe must not wait for the interpreter lock the parsing holds. The prober runs in its own process, as a
kubelet would (in the server's process it would wait for that lock too).
Large bodies are parsed in a process pool (shared/fhir/offload.py); `--inline` parses every body in the serving
process, as before it, for the comparison.
Run: PYTHONPATH=. .venv/bin/python benchmarks/health_under_load.py [SECONDS] [CONNECTIONS] [CONDITIONS] [--inline]
(loopback only, bounded; prints p50/p99 in milliseconds; not a test)
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid

import httpx
import uvicorn

from relais.combined import combined_app
from relais.services import SERVICE_NAMES, bootstrapper
from shared.api.liveness import Liveness
from shared.api.server import bound_socket, serve_beating, server_config
from shared.auth import Directory
from shared.fhir import offload
from shared.settings import RelaisSettings
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


def _probe(url: str, seconds: float, token: str | None = None) -> list[float]:
    latencies: list[float] = []
    deadline = time.monotonic() + seconds
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with httpx.Client(timeout=30, headers=headers) as client:
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


def _start(data_dir: str) -> tuple[list, dict[str, str]]:
    """Every service in this process, as `relais run` starts them, and the tokens the probes use."""
    os.environ.update({"RELAIS_DATA_DIR": data_dir, "RELAIS_ENVIRONMENT": "test", "KAFKA_BOOTSTRAP_SERVERS": ""})
    settings = RelaisSettings()
    directory = Directory(settings.resolved_auth_url, settings.auth_database_schema)
    services = [bootstrapper(name)(directory=directory) for name in SERVICE_NAMES]
    tokens = {
        "hospital": directory.add("hospital", f.DEFAULT_FINESS, "CHU Exemple"),
        "team": directory.add("team", "msp-bench", "MSP Bench"),
    }
    return services, tokens


def _loaders(base: str, token: str, bodies: list[bytes], connections: int, stop: threading.Event,
             posted: list[int]) -> list[threading.Thread]:
    def load(index: int) -> None:
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"}
        with httpx.Client(timeout=120) as client:
            n = 0
            while not stop.is_set():
                body = bodies[(index + n * connections) % len(bodies)]
                answer = client.post(f"{base}/admissions/fhir/$process-message", content=body, headers=headers)
                posted.append(answer.status_code)
                n += 1

    return [threading.Thread(target=load, args=(i,), daemon=True) for i in range(connections)]


def main(seconds: float = 20.0, connections: int = 4, conditions: int = 994, inline: bool = False) -> dict[str, float]:
    saved_env, saved_threshold = dict(os.environ), offload.OFFLOAD_FROM_BYTES
    if inline:
        offload.OFFLOAD_FROM_BYTES = 1 << 40  # every body parsed in the serving process
    try:
        return _measure(seconds, connections, conditions, inline)
    finally:
        offload.OFFLOAD_FROM_BYTES = saved_threshold
        os.environ.clear()
        os.environ.update(saved_env)


def _measure(seconds: float, connections: int, conditions: int, inline: bool) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as data_dir:
        services, tokens = _start(data_dir)
        bodies = [_large_admission(conditions) for _ in range(connections * 4)]
        sock = bound_socket()
        port = sock.getsockname()[1]
        config = server_config(combined_app(services), host="127.0.0.1", port=port, settings=RelaisSettings())
        server = uvicorn.Server(config)
        liveness = Liveness("relais", "127.0.0.1", free_port(), stale_after=10.0)
        liveness.start()
        thread = threading.Thread(target=asyncio.run, args=(serve_beating(server, liveness, [sock]),), daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.02)
        base = f"http://127.0.0.1:{port}"
        targets = {
            "/healthz": (f"{base}/healthz", None),
            "feed read": (f"{base}/notifications/feed", tokens["team"]),
            "liveness port": (f"http://127.0.0.1:{liveness.port}/healthz", None),
        }
        probes = multiprocessing.get_context("spawn").Pool(len(targets))
        try:
            idle_runs = {name: probes.apply_async(_probe, (url, min(seconds, 5.0), token))
                         for name, (url, token) in targets.items()}
            idle = {name: result.get() for name, result in idle_runs.items()}
            stop = threading.Event()
            posted: list[int] = []
            loaders = _loaders(base, tokens["hospital"], bodies, connections, stop, posted)
            for loader in loaders:
                loader.start()
            pending = {name: probes.apply_async(_probe, (url, seconds, token))
                       for name, (url, token) in targets.items()}
            loaded = {name: result.get() for name, result in pending.items()}
            stop.set()
            for loader in loaders:
                loader.join(timeout=120)
            mode = "inline (in the serving process)" if inline else f"process pool of {offload.MAX_WORKERS}"
            print(f"body {len(bodies[0]):,} bytes, {conditions + 5} entries, {connections} connections, parsing {mode}")
            for name in targets:
                print(_summary(f"{name} idle", idle[name]))
                print(_summary(f"{name} under load", loaded[name]))
            print(f"posted {len(posted)} admissions in {seconds:.0f} s, statuses {sorted(set(posted))}")
            figures = {"healthz_p99": _p99(loaded["/healthz"]), "feed_p99": _p99(loaded["feed read"]),
                       "posted": float(len(posted))}
            print(f"p99 under load: /healthz {figures['healthz_p99']:.0f} ms, feed {figures['feed_p99']:.0f} ms "
                  "(target < 150 ms)")
            return figures
        finally:
            probes.close()
            server.should_exit = True
            thread.join(timeout=30)
            liveness.stop()
            sock.close()
            for service in services:
                service.runtime.close()
            offload.shutdown()


if __name__ == "__main__":
    flags = [a for a in sys.argv[1:] if a.startswith("--")]
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    main(float(args[0]) if args else 20.0, int(args[1]) if len(args) > 1 else 4,
         int(args[2]) if len(args) > 2 else 994, inline="--inline" in flags)
