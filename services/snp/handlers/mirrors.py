"""The registry's care teams and territories, mirrored from relais.careteam under the kernel's ordering rule
(shared.mirrors)."""

from __future__ import annotations

from services.snp.commands import MirrorCareTeam, MirrorTerritory
from services.snp.deps import Deps
from services.snp.uow import SnpUnitOfWork
from shared.db.uow import UnitOfWork, handle_once
from shared.mirrors import apply_careteam, apply_territory

CONSUMER = "snp.careteam"


def mirror_care_team(command: MirrorCareTeam, uow: SnpUnitOfWork, deps: Deps) -> bool:
    """False for a message already handled; a snapshot older than the one stored changes nothing."""

    def apply(_: UnitOfWork) -> None:
        apply_careteam(uow.mirrors, command, deps.clock())

    return handle_once(uow, CONSUMER, command.message_id, apply)


def mirror_territory(command: MirrorTerritory, uow: SnpUnitOfWork, deps: Deps) -> bool:
    def apply(_: UnitOfWork) -> None:
        row = apply_territory(uow.mirrors, command, deps.clock())
        if row is not None:
            # Agendas published before their CPTS was known (or under another one) join its pool now.
            uow.schedules.set_territory(row.postal_code, row.cpts_org_id or "")

    return handle_once(uow, CONSUMER, command.message_id, apply)
