"""One function per admissions command, `handler(command, uow, deps)`, all registered in HANDLERS."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from services.admissions.commands import (
    AssignTreatingTeam,
    CancelAdmission,
    ChangeReferent,
    CloseDacCase,
    EndEnrolment,
    EnrolPatient,
    OpenDacCase,
    RecordAdmission,
    RecordConsent,
    ReviseAdmission,
    SetTerritory,
)
from services.admissions.deps import Deps
from services.admissions.handlers.admissions import amend_admission, record_admission
from services.admissions.handlers.assignments import assign_treating_team
from services.admissions.handlers.careteams import change_referent, end_enrolment, enrol_patient
from services.admissions.handlers.registry import close_dac_case, open_dac_case, record_consent, set_territory
from services.admissions.uow import AdmissionsUnitOfWork

Handler = Callable[[Any, AdmissionsUnitOfWork, Deps], Any]

HANDLERS: dict[type, Handler] = {
    RecordAdmission: record_admission,
    ReviseAdmission: amend_admission,
    CancelAdmission: amend_admission,
    EnrolPatient: enrol_patient,
    EndEnrolment: end_enrolment,
    ChangeReferent: change_referent,
    OpenDacCase: open_dac_case,
    CloseDacCase: close_dac_case,
    RecordConsent: record_consent,
    SetTerritory: set_territory,
    AssignTreatingTeam: assign_treating_team,
}

__all__ = ["HANDLERS", "Handler"]
