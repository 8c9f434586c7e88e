"""Effecteurs' availability: publishing Schedules and free SNP Slots, withdrawing a slot."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from services.snp.adapters.orm import ScheduleActorRow, ScheduleRow, SlotRow
from services.snp.adapters.repositories import BUSY, FREE, WITHDRAWN
from services.snp.commands import (
    ActorInput,
    EntryError,
    PublishAvailability,
    ScheduleInput,
    SlotInput,
    WithdrawSlot,
)
from services.snp.deps import Deps
from services.snp.domain import communes
from services.snp.handlers.publish import stable_id, territory_of
from services.snp.uow import SnpUnitOfWork
from shared.errors import Conflict, NotFound, Unprocessable


class EntryErrors(Unprocessable):
    """A transaction Bundle with bad entries: every issue is reported, nothing is stored."""

    def __init__(self, errors: list[EntryError]) -> None:
        super().__init__(f"{len(errors)} entries were refused; nothing was stored")
        self.issues = [
            {
                "severity": "error",
                "code": "processing" if e.status == 422 else "invalid",
                "diagnostics": e.diagnostics,
                "expression": [f"Bundle.entry[{e.entry}]"],
            }
            for e in errors
        ]


@dataclass
class EntryResult:
    entry: int
    status: int
    location: str | None = None
    diagnostics: str | None = None


def publish_availability(command: PublishAvailability, uow: SnpUnitOfWork, deps: Deps) -> list[EntryResult]:
    """Upserts the org's Schedules and free SNP Slots; ids are stable per (org, client id)."""
    now = deps.clock()
    errors = list(command.errors)
    results: list[EntryResult] = []
    with uow:
        by_reference: dict[str, ScheduleRow] = {}
        schedule_rows: dict[int, ScheduleRow] = {}
        for schedule in command.schedules:
            row = _upsert_schedule(uow, command.org_id, schedule, now)
            if row is None:
                errors.append(
                    EntryError(
                        schedule.entry, 422, f"{schedule.commune} is not an INSEE commune code"
                    )
                )
                continue
            for reference in schedule.references:
                by_reference[reference] = row
            schedule_rows[schedule.entry] = row
            by_reference[f"Schedule/{row.id}"] = row
        for slot in command.slots:
            known = by_reference.get(slot.schedule_reference) or _known_schedule(
                uow, command.org_id, slot.schedule_reference
            )
            if known is None:
                errors.append(
                    EntryError(
                        slot.entry,
                        422,
                        f"Slot.schedule {slot.schedule_reference} is neither in "
                        "this Bundle nor a Schedule of your organisation",
                    )
                )
                continue
            result = _upsert_slot(uow, command.org_id, slot, known, now)
            if isinstance(result, EntryError):
                errors.append(result)
            else:
                results.append(result)
        if errors and command.atomic:
            raise EntryErrors(sorted(errors, key=lambda e: e.entry))
        uow.audit.record(
            "snp.publish-availability",
            outcome="ok",
            organisation_id=command.org_id,
            role="team",
            detail={"slots": len(results), "refused": len(errors)},
        )
        uow.commit()
    results.extend(EntryResult(e.entry, e.status, diagnostics=e.diagnostics) for e in errors)
    results.extend(EntryResult(entry, 200, f"Schedule/{row.id}") for entry, row in schedule_rows.items())
    # One response per entry sent: an actor is stored with the Schedule naming it.
    results.extend(EntryResult(entry, 200) for entry in command.actor_entries)
    return sorted(results, key=lambda r: r.entry)


def _upsert_schedule(
    uow: SnpUnitOfWork, org_id: str, schedule: ScheduleInput, now: datetime
) -> ScheduleRow | None:
    commune = communes().get(schedule.commune)
    if commune is None:
        return None
    # No CPTS covering it: the schedule is still searchable by the SAS, outside any placement pool.
    territory = territory_of(uow, commune.postal_codes) or ""
    postal_code = schedule.postal_code or commune.postal_code
    schedule_id = stable_id(org_id, "schedule", schedule.client_id)
    row = uow.schedules.get(schedule_id)
    if row is None:
        row = ScheduleRow(
            id=schedule_id,
            org_id=org_id,
            client_id=schedule.client_id,
            commune=commune.insee,
            postal_code=postal_code,
            territory=territory,
            updated_at=now,
        )
        uow.schedules.add(row)
    else:
        row.commune, row.postal_code, row.territory, row.updated_at = commune.insee, postal_code, territory, now
    uow.schedules.replace_actors(schedule_id, [_actor_row(org_id, schedule_id, a) for a in schedule.actors])
    return row


def _actor_row(org_id: str, schedule_id: str, actor: ActorInput) -> ScheduleActorRow:
    actor_id = stable_id(org_id, actor.kind, actor.client_id)
    resource = dict(actor.resource) | {"id": actor_id}
    return ScheduleActorRow(
        id=stable_id(schedule_id, actor_id),
        schedule_id=schedule_id,
        org_id=org_id,
        kind=actor.kind,
        identifier=actor.identifier[:300] if actor.identifier else None,
        resource=json.dumps(resource, separators=(",", ":")),
    )


def _framed(codes: tuple[str, ...]) -> str:
    # ",A,B," lets one LIKE '%,A,%' find a code; over-long lists keep their first codes.
    text = "," + ",".join(c.replace(",", "") for c in codes) + "," if codes else ""
    return text[:300]


def _upsert_slot(
    uow: SnpUnitOfWork, org_id: str, slot: SlotInput, schedule: ScheduleRow, now: datetime
) -> EntryResult | EntryError:
    slot_id = stable_id(org_id, "slot", slot.client_id)
    row = uow.slots.get(slot_id)
    coded = {
        "types": _framed(slot.types),
        "service_types": _framed(slot.service_types),
        "specialties": _framed(slot.specialties),
        "detail": json.dumps(slot.detail, separators=(",", ":")),
    }
    if row is None:
        uow.slots.add(
            SlotRow(
                id=slot_id,
                schedule_id=schedule.id,
                org_id=org_id,
                client_id=slot.client_id,
                commune=schedule.commune,
                territory=schedule.territory,
                status=FREE,
                start=slot.start,
                end=slot.end,
                updated_at=now,
                **coded,
            )
        )
        return EntryResult(slot.entry, 201, f"Slot/{slot_id}")
    if row.status == BUSY:
        # A booked slot keeps its time: moving it would move a patient's appointment.
        return EntryError(slot.entry, 409, f"Slot {slot_id} is booked and cannot change")
    row.schedule_id, row.commune, row.territory = schedule.id, schedule.commune, schedule.territory
    row.status, row.start, row.end, row.updated_at = FREE, slot.start, slot.end, now
    row.types, row.service_types = coded["types"], coded["service_types"]
    row.specialties, row.detail = coded["specialties"], coded["detail"]
    return EntryResult(slot.entry, 200, f"Slot/{slot_id}")


def _known_schedule(uow: SnpUnitOfWork, org_id: str, reference: str) -> ScheduleRow | None:
    if not reference.startswith("Schedule/"):
        return None
    key = reference.removeprefix("Schedule/")
    row = uow.schedules.get(key) or uow.schedules.get(stable_id(org_id, "schedule", key))
    return row if row is not None and row.org_id == org_id else None


def withdraw_slot(command: WithdrawSlot, uow: SnpUnitOfWork, deps: Deps) -> None:
    now = deps.clock()
    with uow:
        row = uow.slots.get(command.slot_id)
        if row is None:
            raise NotFound(f"no Slot {command.slot_id}")
        if row.org_id != command.org_id:
            # Our transaction ends first (rows are expired: only the command is read from here on); the
            # refusal is written in a transaction of its own, and SQLite lets one writer in at a time.
            uow.rollback()
            deps.record_refusal(
                "snp.withdraw-slot",
                organisation_id=command.org_id,
                role="team",
                resource=f"Slot/{command.slot_id}",
                reason="not-owner",
            )
            # 404 like an unknown slot: another team's slot ids must not be confirmed (no existence oracle).
            raise NotFound(f"no Slot {command.slot_id}")
        if row.status == WITHDRAWN:
            return
        if not uow.slots.withdraw(command.slot_id, command.org_id, now):
            raise Conflict(f"Slot {command.slot_id} is booked; cancel the appointment instead")
        uow.audit.record(
            "snp.withdraw-slot",
            outcome="ok",
            organisation_id=command.org_id,
            role="team",
            resource=f"Slot/{command.slot_id}",
        )
        uow.commit()
