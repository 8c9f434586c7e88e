"""Registry updates other services ask for on `relais.registry.updates`: a team the CPTS oriented the patient to
accepted, so it becomes the treating team. Handled once per message (inbox), published as the new snapshot."""

from __future__ import annotations

import uuid

from services.admissions.adapters.orm import CareTeamRow
from services.admissions.commands import AssignTreatingTeam
from services.admissions.deps import Deps
from services.admissions.handlers.context import careteam_changed, learn_postal_code
from services.admissions.uow import AdmissionsUnitOfWork
from shared.contracts import InvalidContract
from shared.db.uow import UnitOfWork, handle_once
from shared.fhir.encounter import PatientIdentity

CONSUMER = "admissions.registry-updates"


def assign_treating_team(cmd: AssignTreatingTeam, uow: AdmissionsUnitOfWork, deps: Deps) -> bool:
    """Enrol the patient with the team that accepted; a patient who meanwhile got a team keeps it (a change of
    treating team is the team's own request, never a side effect)."""
    update = cmd.update
    key = deps.pseudonymise(PatientIdentity(update.subject_system, update.subject_value))
    if key != update.patient_key:  # the sender keys patients with another secret: no retry will fix it
        raise InvalidContract("patient_key does not match the subject")

    def apply(_: UnitOfWork) -> None:
        current = uow.careteams.active_for_patient(key)
        outcome = "ok"
        if current is not None:
            outcome = "already-enrolled" if current.team_org_id == update.team_org_id else "another-team"
        else:
            now = deps.clock()
            uow.careteams.add(
                CareTeamRow(
                    id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"relais:assignment:{update.assignment_id}")),
                    patient_key=key,
                    subject_system=update.subject_system,
                    subject_value=update.subject_value,
                    team_org_id=update.team_org_id,
                    status="active",
                    started_at=now,
                    version=1,
                )
            )
            uow.careteams.flush()
            learn_postal_code(uow, key, update.postal_code, now)
            careteam_changed(uow, key, "assigned-by-orientation", now)
        uow.audit.record(
            "careteam.assign",
            outcome=outcome,
            organisation_id=update.team_org_id,
            resource=f"Task/{update.assignment_id}",
            detail={"cpts": update.cpts_org_id},
        )

    return handle_once(uow, CONSUMER, cmd.message_id, apply)
