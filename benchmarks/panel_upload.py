"""A team's patient list of 10,000 lines (CSV) applied through the admissions HTTP app (SQLite, embedded log).

Run: .venv/bin/python benchmarks/panel_upload.py [LINES]   (prints seconds for the first and the repeated upload)
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fastapi.testclient import TestClient

from services.admissions.bootstrap import bootstrap
from shared.identifiers import make_nir
from shared.settings import AdmissionsSettings


def csv_body(lines: int) -> bytes:
    rows = ["NIR;Nom;Prénom;Date de naissance;Code postal"]
    for index in range(lines):
        year, month = 30 + index % 60, 1 + index % 12
        nir = make_nir(1 + index % 2, year, month, "88", 1 + index // 1000 % 999, 1 + index % 999)
        rows.append(f"{nir};NOM{index};Prénom{index};19{year:02d}-{month:02d}-15;88000")
    return "\n".join(rows).encode()


def measure(lines: int = 10_000) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="relais-bench-panel-") as data_dir:
        settings = AdmissionsSettings(environment="test", data_dir=Path(data_dir), panel_max_members=max(lines, 1))
        service = bootstrap(settings, run_workers=False)
        token = service.runtime.directory.add("team", "msp-bench", "MSP Bench")
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "text/csv"}
        body = csv_body(lines)
        timings, outcomes = [], []
        with TestClient(service.app) as client:
            for _attempt in range(2):
                started = time.perf_counter()
                answer = client.post("/admissions/fhir/Group/bench/$add", content=body, headers=headers)
                timings.append(time.perf_counter() - started)
                answer.raise_for_status()
                codes = Counter(i["details"]["coding"][0]["code"] for i in answer.json()["issue"][1:])
                outcomes.append(codes)
        service.runtime.close()
    return {
        "lines": float(lines),
        "body_bytes": float(len(body)),
        "first_seconds": timings[0],
        "again_seconds": timings[1],
        "enrolled": float(outcomes[0]["enrolled"]),
        "already_yours_again": float(outcomes[1]["already-yours"]),
    }


def main() -> None:
    lines = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    r = measure(lines)
    print(
        f"panel upload: {r['lines']:.0f} CSV lines ({r['body_bytes'] / 1000:.0f} kB) in {r['first_seconds']:.1f} s "
        f"({r['enrolled']:.0f} enrolled); the same upload again in {r['again_seconds']:.1f} s "
        f"({r['already_yours_again']:.0f} already yours)"
    )


if __name__ == "__main__":
    main()
