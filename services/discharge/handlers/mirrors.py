"""The registry mirror: the patient's care team and the territories, from `relais.careteam`, each handled once.
A discharge that arrived before the team's enrolment did is handed to the team when the enrolment arrives."""

from __future__ import annotations

from datetime import datetime

from services.discharge import domain
from services.discharge.adapters.orm import CareTeamMirrorRow, TerritoryMirrorRow
from services.discharge.commands import MirrorCareTeam, MirrorTerritory
from services.discharge.deps import Deps
from services.discharge.handlers.discharges import hand_to_awaited_team
from services.discharge.uow import DischargeUnitOfWork
from shared.contracts import newer_wins
from shared.db.uow import UnitOfWork, handle_once

CONSUMER = "discharge.careteam"


def mirror_careteam(cmd: MirrorCareTeam, uow: DischargeUnitOfWork, deps: Deps) -> bool:
    """Store the patient's latest coordination context; an older snapshot than the one stored is ignored."""
    change = cmd.change

    def apply(_: UnitOfWork) -> None:
        row = uow.mirror.careteam(change.patient_key)
        if row is not None and not newer_wins(cmd.sent_at, row.source_time):
            return
        now = deps.clock()
        if row is None:
            row = CareTeamMirrorRow(patient_key=change.patient_key, status="inactive", updated_at=now)
            uow.mirror.add(row)
        row.careteam_id = change.careteam_id
        row.team_org_id = change.team_org_id
        row.status = change.status
        row.referent = change.referent.model_dump(mode="json") if change.referent else None
        row.consent_opposed = change.consent_opposed
        row.dac_case_open = change.dac_case_open
        row.dac_org_id = change.dac_org_id
        row.dac_stays = [stay.model_dump() for stay in change.dac_stays] or None
        row.postal_code = change.postal_code
        row.source_time = cmd.sent_at or row.source_time
        row.updated_at = now
        if change.status == "active" and change.team_org_id and cmd.sent_at:
            _discharges_awaiting(uow, deps, change.patient_key, change.team_org_id, cmd)

    return handle_once(uow, CONSUMER, cmd.message_id, apply)


def _discharges_awaiting(
    uow: DischargeUnitOfWork, deps: Deps, patient_key: str, team: str, cmd: MirrorCareTeam
) -> None:
    """Discharges recorded after this enrolment was made, but before it got here, go to the team now."""
    enrolled_at = datetime.fromisoformat(cmd.sent_at or "")
    now = deps.clock()
    for discharge in uow.discharges.without_team_since(patient_key, enrolled_at):
        if domain.awaited_its_team(
            team_org_id=discharge.team_org_id,
            status=discharge.status,
            recorded_at=discharge.recorded_at,
            enrolled_at=enrolled_at,
            now=now,
            window=deps.policy.handoff_expiry,
        ):
            hand_to_awaited_team(uow, discharge, team, source_id=cmd.message_id, now=now, policy=deps.policy)


def mirror_territory(cmd: MirrorTerritory, uow: DischargeUnitOfWork, deps: Deps) -> bool:
    change = cmd.change

    def apply(_: UnitOfWork) -> None:
        row = uow.mirror.territory(change.postal_code)
        now = deps.clock()
        if row is None:
            row = TerritoryMirrorRow(postal_code=change.postal_code, updated_at=now)
            uow.mirror.add(row)
        row.cpts_org_id = change.cpts_org_id
        row.dac_org_id = change.dac_org_id
        row.updated_at = now

    return handle_once(uow, CONSUMER, cmd.message_id, apply)
