"""One function per admissions command, `handler(command, uow, deps)`, all registered in HANDLERS."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from services.admissions.commands import (
    AnswerTeamChange,
    AssignTreatingTeam,
    CancelAdmission,
    ChangeReferent,
    CloseDacCase,
    EndEnrolment,
    EnrolPatient,
    ExpirePanels,
    ExpireTeamChanges,
    RecordAdmission,
    RecordConsent,
    ReferToDac,
    ReviseAdmission,
    SetTerritory,
    UpdatePanel,
)
from services.admissions.deps import Deps
from services.admissions.handlers.admissions import amend_admission, record_admission
from services.admissions.handlers.assignments import assign_treating_team
from services.admissions.handlers.careteams import (
    answer_team_change,
    change_referent,
    end_enrolment,
    enrol_patient,
    expire_team_changes,
)
from services.admissions.handlers.panels import expire_panels, update_panel
from services.admissions.handlers.registry import close_dac_case, record_consent, refer_to_dac, set_territory
from services.admissions.uow import AdmissionsUnitOfWork

Handler = Callable[[Any, AdmissionsUnitOfWork, Deps], Any]

HANDLERS: dict[type, Handler] = {
    RecordAdmission: record_admission,
    ReviseAdmission: amend_admission,
    CancelAdmission: amend_admission,
    EnrolPatient: enrol_patient,
    EndEnrolment: end_enrolment,
    ChangeReferent: change_referent,
    ReferToDac: refer_to_dac,
    AnswerTeamChange: answer_team_change,
    ExpireTeamChanges: expire_team_changes,
    CloseDacCase: close_dac_case,
    RecordConsent: record_consent,
    SetTerritory: set_territory,
    AssignTreatingTeam: assign_treating_team,
    UpdatePanel: update_panel,
    ExpirePanels: expire_panels,
}

__all__ = ["HANDLERS", "Handler"]
