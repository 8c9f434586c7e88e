"""HL7 v2 over MLLP beside the FHIR intake, same process, same run: `relais run --mllp-port` on SQLite and the
embedded log, a patient enrolled with a treating team; admissions (A01) over MLLP, each ACKed only after its
commit, then admissions as FHIR `$process-message` over HTTP, both from `concurrency` connections.

    .venv/bin/python benchmarks/hl7_mllp.py [--messages 1000] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.harness import closed_loop, free_port, http_request, wait_until
from benchmarks.intake_http import PATH, admission_bodies, enrol
from shared.auth import Directory
from shared.hl7v2.mllp import END, START
from tests import factories as f
from tests.hl7_support import pam_message

FACILITY = "DPI-EXEMPLE"


def register(data_dir: Path) -> dict[str, str]:
    directory = Directory(f"sqlite:///{data_dir / 'auth.sqlite'}")
    tokens = {
        "hospital": directory.add(
            "hospital", f.DEFAULT_FINESS, "CHU Exemple", hl7_facilities=[FACILITY], hl7_networks=["127.0.0.1/32"]
        ),
        "team": directory.add("team", "msp-bench", "MSP Bench"),
        "admin": directory.add("admin", "admin-bench", "Admin"),
    }
    directory.close()
    return tokens


async def _sender(port: int, queue: list[bytes], deadline: float) -> tuple[int, list[str]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1_000_000)
    ok, failures = 0, []
    try:
        while queue and time.monotonic() < deadline:
            writer.write(START + queue.pop() + END)
            await writer.drain()
            ack = await reader.readuntil(END)
            if b"MSA|AA|" in ack:
                ok += 1
            else:
                failures.append(ack[:200].decode("latin-1"))
    finally:
        writer.close()
    return ok, failures


async def mllp_loop(port: int, messages: list[bytes], concurrency: int, time_limit: float) -> tuple[int, float]:
    queue = list(reversed(messages))
    started = time.monotonic()
    results = await asyncio.gather(*(_sender(port, queue, started + time_limit) for _ in range(concurrency)))
    elapsed = time.monotonic() - started
    failures = [failure for _, found in results for failure in found]
    if failures:
        raise SystemExit(f"{len(failures)} messages not AA, e.g. {failures[0]!r}")
    return sum(ok for ok, _ in results), elapsed


def v2_messages(count: int) -> list[bytes]:
    run = uuid.uuid4().hex[:8]
    return [pam_message("A01", f"B{run}-{i}", nda=f"NDA-{run}-{i}", facility=FACILITY).encode() for i in range(count)]


def measure(messages: int = 1000, concurrency: int = 8, warmup: int = 100, time_limit: float = 120.0) -> dict:
    data_dir = Path(tempfile.mkdtemp(prefix="relais-bench-hl7-"))
    tokens = register(data_dir)
    http_port, mllp_port = free_port(), free_port()
    env = {**os.environ, "RELAIS_DATA_DIR": str(data_dir), "RELAIS_ENVIRONMENT": "test", "KAFKA_BOOTSTRAP_SERVERS": ""}
    relais = str(Path(sys.executable).parent / "relais")
    with open(data_dir / "relais.log", "ab") as log:
        process = subprocess.Popen(
            [relais, "run", "--port", str(http_port), "--mllp-port", str(mllp_port)],
            cwd=data_dir, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        for port in (mllp_port, http_port):
            wait_until(lambda port=port: asyncio.run(_open(port)), 90, f"relais run (log: {data_dir / 'relais.log'})")
        asyncio.run(enrol(http_port, tokens))
        results: dict[str, float] = {}
        v2 = v2_messages(warmup + messages)
        asyncio.run(mllp_loop(mllp_port, v2[:warmup], concurrency, time_limit))
        ok, elapsed = asyncio.run(mllp_loop(mllp_port, v2[warmup:], concurrency, time_limit))
        results |= {"v2_rate": ok / elapsed, "v2_count": ok, "v2_bytes": sum(map(len, v2)) / len(v2)}
        headers = {"Authorization": f"Bearer {tokens['hospital']}", "Content-Type": "application/fhir+json"}
        bodies = admission_bodies(warmup + messages)
        requests = [http_request("POST", PATH, http_port, headers, body) for body in bodies]
        asyncio.run(closed_loop(http_port, requests[:warmup], concurrency, time_limit))
        ok, elapsed = asyncio.run(closed_loop(http_port, requests[warmup:], concurrency, time_limit))
        results |= {"fhir_rate": ok / elapsed, "fhir_count": ok, "fhir_bytes": sum(map(len, bodies)) / len(bodies)}
        results["ratio"] = results["v2_rate"] / results["fhir_rate"]
        return results
    finally:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


async def _open(port: int) -> bool:
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.close()
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    r = measure(args.messages, args.concurrency)
    print(f"{args.messages} admissions each way, {args.concurrency} connections, relais run (SQLite, embedded log)")
    print(f"HL7 v2 A01 over MLLP ({r['v2_bytes']:.0f} B):            {r['v2_rate']:8.0f} msg/s")
    print(f"FHIR $process-message over HTTP ({r['fhir_bytes']:.0f} B): {r['fhir_rate']:8.0f} msg/s")
    print(f"ratio v2 / FHIR:                                  {r['ratio']:8.1%}")


if __name__ == "__main__":
    main()
