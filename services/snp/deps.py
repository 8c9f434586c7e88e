"""What every snp handler may use besides its unit of work, built once in bootstrap.py."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from shared.audit import RefusalRecorder
from shared.settings import SnpSettings

Clock = Callable[[], datetime]
# (identifier system, identifier value) -> the patient's pseudonymous key.
Pseudonymiser = Callable[[str, str], str]


def system_clock() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Deps:
    clock: Clock
    pseudonymise: Pseudonymiser
    settings: SnpSettings
    record_refusal: RefusalRecorder  # the kernel's: a refusal is audited in its own transaction
