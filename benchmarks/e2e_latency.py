"""End-to-end latency, hospital POST to the notification in the team's feed, at fixed rates, on Kafka.

    .venv/bin/python benchmarks/e2e_latency.py [--rates 50 100 200] [--seconds 10]

Tansu (a Kafka-protocol broker, started as tests/infra/brokers.py does) on a loopback port; admissions and
notifications each under uvicorn in their own process, each on its own SQLite file (the embedded default
database; the bus is Kafka). The hospital posts admissions of an enrolled patient at a fixed rate (open
loop: a slow answer never delays the next send); the team polls `GET /notifications/feed?after=CURSOR`
back to back. Latency of a message: from just before its POST to the feed answer that first lists it
(so it includes up to one poll round trip).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.harness import Connection, Server, http_request, percentile
from benchmarks.intake_http import PATH, enrol, register
from tests import factories as f
from tests.infra.brokers import TansuBroker


def admission(nda: str) -> bytes:
    bundle = f.admission_message(conditions=[("E11", "Diabète sucré de type 2")])
    bundle["entry"][1]["resource"]["identifier"][0]["value"] = nda
    return f.body(bundle)


class Feed:
    """The team's feed, read back to back from the last cursor; records when each subject first appears."""

    def __init__(self, port: int, token: str) -> None:
        self.port = port
        self.token = token
        self.cursor: str | None = None
        self.seen: dict[str, float] = {}
        self.polls = 0

    async def run(self, stop: asyncio.Event) -> None:
        connection = await Connection(self.port).open()
        try:
            while not stop.is_set():
                await self.poll(connection)
                await asyncio.sleep(0.002)
        finally:
            await connection.close()

    async def poll(self, connection: Connection) -> None:
        query = f"?after={self.cursor}&limit=200" if self.cursor else "?limit=200"
        auth = {"Authorization": f"Bearer {self.token}"}
        request = http_request("GET", f"/notifications/feed{query}", self.port, auth)
        status, body = await connection.send(request)
        now = time.perf_counter()
        self.polls += 1
        if status != 200:
            raise SystemExit(f"feed answered {status}: {body[:300]!r}")
        page = json.loads(body)
        for entry in page.get("entry", []):
            params = {p["name"]: p for p in entry["resource"]["parameter"]}
            subject = params.get("subject", {}).get("valueString", "")
            self.seen.setdefault(subject.rpartition("|")[2], now)
        self.cursor = page["meta"]["tag"][0]["code"]


async def fixed_rate(port: int, token: str, feed: Feed, rate: float, seconds: float, drain: float) -> dict:
    count = int(rate * seconds)
    ndas = [f"NDA-{uuid.uuid4().hex[:12]}" for _ in range(count)]
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"}
    requests = [http_request("POST", PATH, port, headers, admission(nda)) for nda in ndas]
    sent: dict[str, float] = {}
    answered: list[float] = []
    pool: asyncio.Queue[Connection] = asyncio.Queue()
    for _ in range(64):
        pool.put_nowait(await Connection(port).open())

    async def post(index: int) -> None:
        connection = await pool.get()
        try:
            sent[ndas[index]] = time.perf_counter()
            status, body = await connection.send(requests[index])
            if status != 200:
                raise SystemExit(f"intake answered {status}: {body[:300]!r}")
            answered.append(time.perf_counter() - sent[ndas[index]])
        finally:
            pool.put_nowait(connection)

    started = time.perf_counter()
    tasks = []
    for index in range(count):
        delay = started + index / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(post(index)))
    await asyncio.gather(*tasks)
    send_seconds = time.perf_counter() - started
    deadline = time.perf_counter() + drain
    while len([n for n in ndas if n in feed.seen]) < count and time.perf_counter() < deadline:
        await asyncio.sleep(0.05)
    while not pool.empty():
        await (await pool.get()).close()
    latencies = [(feed.seen[n] - sent[n]) * 1000 for n in ndas if n in feed.seen]
    return {
        "rate": rate,
        "sent": count,
        "achieved_rate": count / send_seconds,
        "delivered": len(latencies),
        "p50": percentile(latencies, 50) if latencies else float("nan"),
        "p99": percentile(latencies, 99) if latencies else float("nan"),
        "max": max(latencies) if latencies else float("nan"),
        "post_p50": percentile(answered, 50) * 1000,
        "post_p99": percentile(answered, 99) * 1000,
    }


async def scenario(admissions: Server, notifications: Server, tokens: dict, rates, seconds, drain) -> list[dict]:
    await enrol(admissions.port, tokens)
    feed = Feed(notifications.port, tokens["team"])
    stop = asyncio.Event()
    poller = asyncio.create_task(feed.run(stop))
    # Warm up until a message comes through: the consumer group join takes a moment on a fresh broker.
    warm = await fixed_rate(admissions.port, tokens["hospital"], feed, 10, 1, drain=60)
    if not warm["delivered"]:
        raise SystemExit("no notification reached the feed within 60 s")
    results = []
    for rate in rates:
        results.append(await fixed_rate(admissions.port, tokens["hospital"], feed, rate, seconds, drain))
    stop.set()
    await poller
    return results


def measure(
    rates=(50, 100, 200), seconds: float = 10.0, drain: float = 30.0, log_dir: Path | None = None
) -> list[dict]:
    data_dir = Path(tempfile.mkdtemp(prefix="relais-bench-e2e-"))
    log_dir = log_dir or data_dir
    tokens = register(data_dir)
    broker = TansuBroker()
    broker.start()
    try:
        env = {
            "RELAIS_DATA_DIR": str(data_dir),
            "RELAIS_ENVIRONMENT": "test",
            "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
            "RELAIS_KAFKA_SESSION_TIMEOUT_MS": "2000",
            "RELAIS_CONSUMER_GROUP_PREFIX": f"bench-{uuid.uuid4().hex[:8]}",
        }
        with (
            Server("admissions", env, log_dir / "admissions.log") as admissions,
            Server("notifications", env, log_dir / "notifications.log") as notifications,
        ):
            return asyncio.run(scenario(admissions, notifications, tokens, rates, seconds, drain))
    finally:
        broker.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", type=float, nargs="+", default=[50, 100, 200])
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    print(f"{'rate/s':>7} {'sent':>6} {'achieved':>9} {'delivered':>9} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for r in measure(args.rates, args.seconds):
        print(
            f"{r['rate']:>7.0f} {r['sent']:>6} {r['achieved_rate']:>9.1f} {r['delivered']:>9} "
            f"{r['p50']:>8.1f} {r['p99']:>8.1f} {r['max']:>8.1f}"
        )


if __name__ == "__main__":
    main()
