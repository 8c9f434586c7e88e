"""Where an admission's CPU goes: cProfile over the admissions route's work, in process, without HTTP.

    PYTHONPATH=. .venv/bin/python benchmarks/profile_intake.py [MESSAGES] [TOP]

Each message goes the way `POST /admissions/fhir/$process-message` takes it (parse and validate the Bundle,
build the command, the handler's transaction), on SQLite and the embedded log, for a patient enrolled with a
treating team (the full notification Bundle is built). Prints the top entries by cumulative and own time.
"""

from __future__ import annotations

import cProfile
import io
import pstats
import sys
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.admissions import intake
from services.admissions.bootstrap import bootstrap
from shared.fhir.intake import parse_json, parse_message_bundle
from shared.settings import AdmissionsSettings
from tests import factories as f


def admit(bus: object, body: bytes) -> None:
    message = parse_message_bundle(body, "application/fhir+json", 10_000_000)
    bus.handle(intake.admission_command(message, f.DEFAULT_FINESS))  # type: ignore[attr-defined]


def main(messages: int = 400, top: int = 25) -> None:
    with tempfile.TemporaryDirectory() as data_dir:
        service = bootstrap(AdmissionsSettings(environment="test", data_dir=Path(data_dir)), run_workers=False)
        bus = service.app.state.bus
        bus.handle(intake.enrol_command(parse_json(f.body(f.careteam_resource())), "msp-bench", datetime.now(UTC)))
        bodies = []
        for _ in range(messages + 50):
            bundle = f.admission_message(conditions=[("E11", "Diabète sucré de type 2")])
            bundle["entry"][1]["resource"]["identifier"][0]["value"] = f"NDA-{uuid.uuid4().hex[:12]}"
            bodies.append(f.body(bundle))
        for body in bodies[:50]:
            admit(bus, body)
        profile = cProfile.Profile()
        profile.enable()
        for body in bodies[50:]:
            admit(bus, body)
        profile.disable()
        for order in ("cumulative", "tottime"):
            out = io.StringIO()
            pstats.Stats(profile, stream=out).sort_stats(order).print_stats(top)
            print(out.getvalue())
        service.runtime.close()


if __name__ == "__main__":
    args = sys.argv[1:]
    main(int(args[0]) if args else 400, int(args[1]) if len(args) > 1 else 25)
