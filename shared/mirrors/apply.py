"""Registry records become mirror commands, and mirror commands become rows, under the one ordering rule."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

from sqlalchemy import select
from sqlmodel import Session, col

from shared.bus.envelope import Envelope
from shared.contracts import CareTeamChanged, TerritoryChanged, parse_registry_change
from shared.db.repository import Repository
from shared.mirrors.ordering import Stamp, supersedes
from shared.mirrors.tables import CareTeamMirror, MirrorTables, TerritoryMirror

Change = TypeVar("Change", CareTeamChanged, TerritoryChanged)


@dataclass(frozen=True)
class _MirrorCommand(Generic[Change]):
    message_id: str
    sent_at: str | None  # the envelope's time
    change: Change

    @property
    def stamp(self) -> Stamp:
        return Stamp(self.change.at, self.sent_at, self.message_id)


@dataclass(frozen=True)
class MirrorCareTeam(_MirrorCommand[CareTeamChanged]):
    """Apply one `careteam.changed` snapshot from the registry (handled once per message id)."""


@dataclass(frozen=True)
class MirrorTerritory(_MirrorCommand[TerritoryChanged]):
    """Apply one `territory.changed` snapshot from the registry (handled once per message id)."""


def registry_command(envelope: Envelope) -> MirrorCareTeam | MirrorTerritory | None:
    """The command a `relais.careteam` record asks for; None for a type mirrors do not know. A broken contract
    raises InvalidContract (a ValueError), which no retry fixes."""
    change = parse_registry_change(envelope.type, envelope.data)
    if change is None:
        return None
    sent_at = envelope.time or None
    if isinstance(change, CareTeamChanged):
        return MirrorCareTeam(envelope.id, sent_at, change)
    return MirrorTerritory(envelope.id, sent_at, change)


class MirrorRepository(Repository):
    """Reads and writes of a service's two mirror tables, named by its declaration."""

    def __init__(self, session: Session, tables: MirrorTables) -> None:
        super().__init__(session)
        self.tables = tables

    def careteam(self, patient_key: str) -> CareTeamMirror | None:
        return self.session.get(self.tables.careteam, patient_key)

    def territory(self, postal_code: str | None) -> TerritoryMirror | None:
        return self.session.get(self.tables.territory, postal_code) if postal_code else None

    def postal_codes_of_cpts(self, cpts_org_id: str) -> set[str]:
        table = self.tables.territory
        query = select(col(table.postal_code)).where(col(table.cpts_org_id) == cpts_org_id)
        return set(self.session.execute(query).scalars())


def _stored(row: CareTeamMirror | TerritoryMirror) -> Stamp:
    return Stamp(row.source_time, row.source_sent_at, row.source_message_id)


def _stamp(row: CareTeamMirror | TerritoryMirror, stamp: Stamp, now: datetime) -> None:
    row.source_time = stamp.at or row.source_time
    row.source_sent_at = stamp.sent_at or row.source_sent_at
    row.source_message_id = stamp.message_id
    row.updated_at = now


def apply_careteam(mirrors: MirrorRepository, command: MirrorCareTeam, now: datetime) -> CareTeamMirror | None:
    """The patient's row after the snapshot; None when the row holds a snapshot that supersedes it."""
    change, stamp = command.change, command.stamp
    row = mirrors.careteam(change.patient_key)
    if row is not None and not supersedes(stamp, _stored(row)):
        return None
    if row is None:
        row = mirrors.tables.careteam(patient_key=change.patient_key, status="inactive", updated_at=now)
    row.careteam_id = change.careteam_id
    row.team_org_id = change.team_org_id
    row.status = change.status
    row.referent = change.referent.model_dump(mode="json") if change.referent else None
    row.consent_opposed = change.consent_opposed
    row.dac_case_open = change.dac_case_open
    row.dac_org_id = change.dac_org_id
    row.dac_stays = [stay.model_dump() for stay in change.dac_stays] or None
    row.postal_code = change.postal_code
    _stamp(row, stamp, now)
    mirrors.add(row)
    return row


def apply_territory(mirrors: MirrorRepository, command: MirrorTerritory, now: datetime) -> TerritoryMirror | None:
    """The postal code's row after the snapshot; None when the row holds a snapshot that supersedes it."""
    change, stamp = command.change, command.stamp
    row = mirrors.territory(change.postal_code)
    if row is not None and not supersedes(stamp, _stored(row)):
        return None
    if row is None:
        row = mirrors.tables.territory(postal_code=change.postal_code, updated_at=now)
    row.cpts_org_id, row.dac_org_id = change.cpts_org_id, change.dac_org_id
    _stamp(row, stamp, now)
    mirrors.add(row)
    return row
