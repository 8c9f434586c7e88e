"""Reads of the discharge service: a Task for the organisations entitled to it, and the mirrored context the
rules need. Nothing here writes."""

from __future__ import annotations

from typing import Any

from services.discharge import domain
from services.discharge.adapters.orm import DischargeRow, FollowupRow
from services.discharge.domain import MirrorState, TerritoryState
from services.discharge.resources import followup_task, handoff_task, without_owner
from services.discharge.uow import DischargeUnitOfWork
from shared.carecircle import CircleFacts, NotInCircle, Purpose, Share, require
from shared.events import Role


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


def _circle(
    uow: DischargeUnitOfWork, discharge: DischargeRow, team_org_id: str | None
) -> CircleFacts:
    """The Task's circle: the discharging hospital (its own encounter), the team it targets, a DAC with a case."""
    mirror = mirror_state(uow, discharge.patient_key)
    dac = mirror.dac_org_id if mirror is not None and mirror.dac_case_open else None
    return CircleFacts(
        team_org_id=team_org_id,
        hospitals=frozenset({discharge.hospital_org_id}),
        dac_cases=frozenset({dac}) if dac else frozenset(),
    )


def _as_seen_by(task: dict[str, Any], seen: Share, team_known: bool) -> dict[str, Any]:
    # A hospital learns which team holds the patient only once that team has accepted the handoff.
    if seen is Share.OWN_ENCOUNTERS and not team_known:
        return without_owner(task)
    return task


def read_task(uow: DischargeUnitOfWork, task_id: str, organisation_id: str, role: Role | str) -> dict[str, Any]:
    """A Task for its care circle (kernel policy): the hospital that sent it, the team it targets, a DAC with an
    open case; anyone else gets the 404 an unknown Task gets."""
    what = f"Task/{task_id}"
    with uow:
        handoff = uow.handoffs.get(task_id)
        if handoff is not None:
            discharge = uow.discharges.require(handoff.discharge_id)
            seen = require(role, organisation_id, _circle(uow, discharge, handoff.team_org_id), READ, what)
            task = handoff_task(handoff, discharge, discharge.payload.get("letter"))
            return _as_seen_by(task, seen, handoff.status in TEAM_KNOWN)
        item = uow.followups.get(task_id)
        if item is not None:
            discharge = uow.discharges.require(item.discharge_id)
            team = followup_team(uow, item, discharge)
            seen = require(role, organisation_id, _circle(uow, discharge, team), READ, what)
            accepted = any(h.status in TEAM_KNOWN for h in uow.handoffs.for_discharge(discharge.id))
            return _as_seen_by(followup_task(item, discharge, team), seen, accepted)
    raise NotInCircle(what)


READ = Purpose.READ_CLINICAL
# Handoff states in which the team has made itself known to the hospital (it accepted, then acted).
TEAM_KNOWN = frozenset({"accepted", "in-progress", "completed"})
