"""What every admissions handler may use besides its unit of work, built once in bootstrap.py."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from shared.audit import RefusalRecorder
from shared.fhir.encounter import PatientIdentity
from shared.settings import AdmissionsSettings

Clock = Callable[[], datetime]
# A patient identity -> the patient's pseudonymous key.
Pseudonymiser = Callable[[PatientIdentity], str]


def system_clock() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Deps:
    clock: Clock
    pseudonymise: Pseudonymiser
    record_refusal: RefusalRecorder  # the kernel's: a refusal is audited in its own transaction
    settings: AdmissionsSettings
