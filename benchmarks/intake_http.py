"""Intake rate over real HTTP: admissions `$process-message` (validated, stored, in the outbox) beside the lean
reference (`benchmarks/lean.py`: the essential work alone) and a bare FastAPI endpoint taking the same bodies,
all under uvicorn in a subprocess, measured in the same run.

    .venv/bin/python benchmarks/intake_http.py [--messages 1500] [--concurrency 8]

SQLite and the embedded log (the outbox relay runs in the server, as in production). Every message is an
admission of a patient enrolled with a treating team: the worst case, a full FHIR Bundle built per message.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.harness import Connection, Server, closed_loop, http_request
from shared.auth import Directory
from tests import factories as f

PATH = "/admissions/fhir/$process-message"
BARE_PATH = "/bare/fhir/$process-message"
LEAN_PATH = "/lean/fhir/$process-message"


def admission_bodies(count: int) -> list[bytes]:
    bodies = []
    for _ in range(count):
        bundle = f.admission_message(conditions=[("E11", "Diabète sucré de type 2")])
        bundle["entry"][1]["resource"]["identifier"][0]["value"] = f"NDA-{uuid.uuid4().hex[:12]}"
        bodies.append(f.body(bundle))
    return bodies


def register(data_dir: Path) -> dict[str, str]:
    directory = Directory(f"sqlite:///{data_dir / 'auth.sqlite'}")
    tokens = {
        "hospital": directory.add("hospital", f.DEFAULT_FINESS, "CHU Exemple"),
        "team": directory.add("team", "msp-bench", "MSP Bench"),
        "admin": directory.add("admin", "admin-bench", "Admin"),
    }
    directory.close()
    return tokens


async def enrol(port: int, tokens: dict[str, str]) -> None:
    """The territory and the patient's treating team, so each admission goes to the team in full."""
    connection = await Connection(port).open()
    try:
        territory = json.dumps({"cpts": "cpts-bench"}).encode()
        status, body = await connection.send(
            http_request(
                "PUT",
                "/admissions/territories/75014",
                port,
                {"Authorization": f"Bearer {tokens['admin']}", "Content-Type": "application/json"},
                territory,
            )
        )
        assert status == 200, body
        status, body = await connection.send(
            http_request(
                "POST",
                "/admissions/fhir/CareTeam",
                port,
                {"Authorization": f"Bearer {tokens['team']}", "Content-Type": "application/fhir+json"},
                f.body(f.careteam_resource()),
            )
        )
        assert status == 202, body
    finally:
        await connection.close()


def measure(
    messages: int = 1500,
    concurrency: int = 8,
    warmup: int = 100,
    time_limit: float = 120.0,
    log_dir: Path | None = None,
) -> dict[str, float]:
    data_dir = Path(tempfile.mkdtemp(prefix="relais-bench-intake-"))
    log_dir = log_dir or data_dir
    tokens = register(data_dir)
    headers = {"Authorization": f"Bearer {tokens['hospital']}", "Content-Type": "application/fhir+json"}
    bodies = admission_bodies(warmup + messages)
    env = {"RELAIS_DATA_DIR": str(data_dir), "RELAIS_ENVIRONMENT": "test", "KAFKA_BOOTSTRAP_SERVERS": ""}
    results: dict[str, float] = {}
    with Server("admissions", env, log_dir / "admissions.log") as server:
        asyncio.run(enrol(server.port, tokens))
        requests = [http_request("POST", PATH, server.port, headers, body) for body in bodies]
        asyncio.run(closed_loop(server.port, requests[:warmup], concurrency, time_limit))
        ok, elapsed = asyncio.run(closed_loop(server.port, requests[warmup:], concurrency, time_limit))
        results["intake_rate"] = ok / elapsed
        results["intake_count"] = ok
    for target, path in (("lean", LEAN_PATH), ("bare", BARE_PATH)):
        with Server(target, env, log_dir / f"{target}.log") as server:
            requests = [http_request("POST", path, server.port, headers, body) for body in bodies]
            asyncio.run(closed_loop(server.port, requests[:warmup], concurrency, time_limit))
            ok, elapsed = asyncio.run(closed_loop(server.port, requests[warmup:], concurrency, time_limit))
            results[f"{target}_rate"] = ok / elapsed
            results[f"{target}_count"] = ok
    results["lean_ratio"] = results["intake_rate"] / results["lean_rate"]
    results["ratio"] = results["intake_rate"] / results["bare_rate"]
    results["body_bytes"] = sum(len(b) for b in bodies) / len(bodies)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1500)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    r = measure(args.messages, args.concurrency)
    print(f"body: {r['body_bytes']:.0f} bytes; {args.messages} messages, {args.concurrency} connections")
    print(f"admissions $process-message: {r['intake_rate']:8.0f} messages/s")
    print(f"lean reference:              {r['lean_rate']:8.0f} messages/s")
    print(f"bare FastAPI endpoint:       {r['bare_rate']:8.0f} messages/s")
    print(f"intake / lean:               {r['lean_ratio']:8.1%}   target >= 70%")
    print(f"intake / bare:               {r['ratio']:8.1%}")


if __name__ == "__main__":
    main()
