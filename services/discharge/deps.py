"""What every discharge handler may use besides the unit of work; built once, in bootstrap.py."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from services.discharge.domain import Policy
from shared.audit import RefusalRecorder
from shared.auth import Principal
from shared.settings import DischargeSettings

Clock = Callable[[], datetime]
# (identifier system, value) -> the patient's pseudonymous key.
Pseudonymiser = Callable[[str, str], str]
# organisation id -> its registration (role), or None: $assign checks it names a treating team.
OrganisationLookup = Callable[[str], Principal | None]


def no_organisations(_organisation_id: str) -> Principal | None:
    return None


@dataclass(frozen=True)
class Deps:
    clock: Clock
    policy: Policy
    pseudonymise: Pseudonymiser
    record_refusal: RefusalRecorder  # the kernel's: a refusal is audited in its own transaction
    settings: DischargeSettings
    organisation: OrganisationLookup = no_organisations
