"""The registry's care teams and territories, mirrored from relais.careteam under the kernel's newer-wins rule."""

from __future__ import annotations

from services.snp.adapters.orm import CareTeamMirrorRow, TerritoryMirrorRow
from services.snp.commands import MirrorCareTeam, MirrorTerritory
from services.snp.deps import Deps
from services.snp.uow import SnpUnitOfWork
from shared.contracts import newer_wins
from shared.db.uow import UnitOfWork, handle_once

CONSUMER = "snp.careteam"


def mirror_care_team(command: MirrorCareTeam, uow: SnpUnitOfWork, deps: Deps) -> bool:
    """False for a message already handled; an older snapshot than the one stored changes nothing."""
    change = command.change

    def apply(_: UnitOfWork) -> None:
        row = uow.mirrors.careteam(change.patient_key)
        if row is not None and not newer_wins(change.at, row.source_time):
            return
        if row is None:
            row = CareTeamMirrorRow(patient_key=change.patient_key, status="inactive", updated_at=deps.clock())
            uow.mirrors.add(row)
        row.careteam_id = change.careteam_id
        row.team_org_id = change.team_org_id
        row.status = change.status
        row.consent_opposed = change.consent_opposed
        row.dac_case_open = change.dac_case_open
        row.dac_org_id = change.dac_org_id
        row.postal_code = change.postal_code
        row.source_time = change.at or row.source_time
        row.updated_at = deps.clock()

    return handle_once(uow, CONSUMER, command.message_id, apply)


def mirror_territory(command: MirrorTerritory, uow: SnpUnitOfWork, deps: Deps) -> bool:
    change = command.change

    def apply(_: UnitOfWork) -> None:
        row = uow.mirrors.territory(change.postal_code)
        if row is not None and not newer_wins(change.at, row.source_time):
            return
        if row is None:
            row = TerritoryMirrorRow(postal_code=change.postal_code, updated_at=deps.clock())
            uow.mirrors.add(row)
        row.cpts_org_id, row.dac_org_id = change.cpts_org_id, change.dac_org_id
        row.source_time = change.at or row.source_time
        row.updated_at = deps.clock()
        # Agendas published before their CPTS was known (or under another one) join its pool now.
        uow.schedules.set_territory(change.postal_code, change.cpts_org_id or "")

    return handle_once(uow, CONSUMER, command.message_id, apply)
