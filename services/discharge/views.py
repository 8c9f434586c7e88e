"""Reads of the discharge service: a Task for the organisations entitled to it, and the mirrored context the
rules need. Nothing here writes."""

from __future__ import annotations

from typing import Any

from services.discharge import domain
from services.discharge.adapters.orm import DischargeRow, FollowupRow
from services.discharge.domain import MirrorState, TerritoryState
from services.discharge.resources import followup_task, handoff_task
from services.discharge.uow import DischargeUnitOfWork
from shared.errors import NotFound


def mirror_state(uow: DischargeUnitOfWork, patient_key: str) -> MirrorState | None:
    row = uow.mirror.careteam(patient_key)
    if row is None:
        return None
    return MirrorState(
        team_org_id=row.team_org_id,
        team_active=row.status == "active" and bool(row.team_org_id),
        referent=row.referent,
        consent_opposed=row.consent_opposed,
        dac_case_open=row.dac_case_open,
        dac_org_id=row.dac_org_id,
        postal_code=row.postal_code,
    )


def territory_state(uow: DischargeUnitOfWork, postal_code: str | None) -> TerritoryState | None:
    row = uow.mirror.territory(postal_code)
    return TerritoryState(row.cpts_org_id, row.dac_org_id) if row else None


def followup_team(uow: DischargeUnitOfWork, item: FollowupRow, discharge: DischargeRow) -> str | None:
    """Who owns a follow-up item now (see domain.followup_owner)."""
    let_go = domain.declined_teams((h.team_org_id, h.status) for h in uow.handoffs.for_discharge(discharge.id))
    return domain.followup_owner(item.team_org_id, mirror_state(uow, discharge.patient_key), let_go)


def read_task(uow: DischargeUnitOfWork, task_id: str, organisation_id: str) -> dict[str, Any]:
    """A Task for the hospital that sent it or the team it targets; anyone else gets 404."""
    with uow:
        handoff = uow.handoffs.get(task_id)
        if handoff is not None and organisation_id in (handoff.hospital_org_id, handoff.team_org_id):
            discharge = uow.discharges.require(handoff.discharge_id)
            return handoff_task(handoff, discharge, discharge.payload.get("letter"))
        item = uow.followups.get(task_id)
        if item is not None:
            discharge = uow.discharges.require(item.discharge_id)
            team = followup_team(uow, item, discharge)
            if organisation_id in (item.hospital_org_id, team):
                return followup_task(item, discharge, team)
    raise NotFound(f"Task/{task_id} is not known")
