"""Admissions intake rate: N sequential admission messages through the HTTP app (SQLite, embedded log).

Run: .venv/bin/python benchmarks/admissions_intake.py [N]   (prints messages/second; not a test)
"""

from __future__ import annotations

import sys
import tempfile
import time
import uuid
from pathlib import Path

from fastapi.testclient import TestClient

from services.admissions.bootstrap import bootstrap
from shared.settings import AdmissionsSettings
from tests import factories as f


def main(n: int = 500) -> None:
    with tempfile.TemporaryDirectory() as data_dir:
        settings = AdmissionsSettings(environment="test", data_dir=Path(data_dir))
        service = bootstrap(settings, run_workers=True)
        directory = service.runtime.directory
        hospital = directory.add("hospital", f.DEFAULT_FINESS, "CHU Exemple")
        team = directory.add("team", "msp-bench", "MSP Bench")
        admin = directory.add("admin", "admin-bench", "Admin")
        headers = {"Authorization": f"Bearer {hospital}", "Content-Type": "application/fhir+json"}
        bodies = []
        for _ in range(n):
            bundle = f.admission_message(conditions=[("E11", "Diabète sucré de type 2")])
            bundle["entry"][1]["resource"]["identifier"][0]["value"] = f"NDA-{uuid.uuid4().hex[:12]}"
            bodies.append(f.body(bundle))
        with TestClient(service.app) as client:
            client.put(
                "/admissions/territories/75014",
                json={"cpts": "cpts-bench"},
                headers={"Authorization": f"Bearer {admin}"},
            )
            # Every message is for the enrolled patient: the worst case, a full FHIR Bundle built per message.
            client.post(
                "/admissions/fhir/CareTeam",
                content=f.body(f.careteam_resource()),
                headers={"Authorization": f"Bearer {team}", "Content-Type": "application/fhir+json"},
            )
            started = time.perf_counter()
            for body in bodies:
                response = client.post("/admissions/fhir/$process-message", content=body, headers=headers)
                if response.status_code != 200:
                    raise SystemExit(f"unexpected {response.status_code}: {response.text[:300]}")
            elapsed = time.perf_counter() - started
        service.runtime.close()
    print(
        f"admissions intake: {n} messages in {elapsed:.2f} s = {n / elapsed:.0f} messages/second "
        "(sequential, TestClient, SQLite + embedded log, relay running)"
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 500)
