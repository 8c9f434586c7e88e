"""The registry mirror: the patient's care team and the territories, from `relais.careteam`, each handled once,
under the kernel's ordering rule (shared.mirrors). A discharge that arrived before the team's enrolment did is
handed to the team when the enrolment arrives."""

from __future__ import annotations

from datetime import datetime

from services.discharge import domain
from services.discharge.deps import Deps
from services.discharge.handlers.discharges import hand_to_awaited_team
from services.discharge.uow import DischargeUnitOfWork
from shared.db.uow import UnitOfWork, handle_once
from shared.mirrors import MirrorCareTeam, MirrorTerritory, apply_careteam, apply_territory
from shared.mirrors.ordering import parse_instant

CONSUMER = "discharge.careteam"


def mirror_careteam(cmd: MirrorCareTeam, uow: DischargeUnitOfWork, deps: Deps) -> bool:
    """Store the patient's latest coordination context; a snapshot older than the one stored changes nothing."""
    change = cmd.change

    def apply(_: UnitOfWork) -> None:
        row = apply_careteam(uow.mirror, cmd, deps.clock())
        # The enrolment's own time (the envelope's for a producer that wrote none) dates the team's arrival.
        enrolled_at = parse_instant(change.at) or parse_instant(cmd.sent_at)
        if row is not None and change.status == "active" and change.team_org_id and enrolled_at:
            _discharges_awaiting(uow, deps, change.patient_key, change.team_org_id, enrolled_at, cmd.message_id)

    return handle_once(uow, CONSUMER, cmd.message_id, apply)


def _discharges_awaiting(
    uow: DischargeUnitOfWork, deps: Deps, patient_key: str, team: str, enrolled_at: datetime, source_id: str
) -> None:
    """Discharges recorded after this enrolment was made, but before it got here, go to the team now."""
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
            hand_to_awaited_team(uow, discharge, team, source_id=source_id, now=now, policy=deps.policy)


def mirror_territory(cmd: MirrorTerritory, uow: DischargeUnitOfWork, deps: Deps) -> bool:
    """Which CPTS and DAC cover a postal code; a snapshot older than the one stored changes nothing."""

    def apply(_: UnitOfWork) -> None:
        apply_territory(uow.mirror, cmd, deps.clock())

    return handle_once(uow, CONSUMER, cmd.message_id, apply)
