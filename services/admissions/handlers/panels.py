"""A team's patient list (panel): each line enrols through the CareTeam enrolment handler, under the same care-circle
rules (a patient another team treats becomes a change-of-team request).

Lines are applied in chunks, one transaction a chunk; each line runs the reused handler inside a savepoint of it, and
its list entry is written in the same transaction: a line is applied whole or not at all, and a failed line rolls
back alone. A line that changes nothing (already the team's patient, or its request waits) is only confirmed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy.exc import IntegrityError

from services.admissions.adapters.orm import CareTeamRow
from services.admissions.adapters.panels import PanelMemberRow, PanelRepository
from services.admissions.commands import EndEnrolment, EnrolPatient, ExpirePanels, PanelLine, UpdatePanel
from services.admissions.deps import Deps
from services.admissions.handlers.careteams import end_enrolment, enrol_patient
from services.admissions.handlers.context import instant, notify, patient_context
from services.admissions.handlers.panel_uow import ChunkFacts, Prefetched, Savepoint
from services.admissions.panels import LineReport, Outcome, report_outcome
from services.admissions.uow import AdmissionsUnitOfWork
from services.admissions.views import render
from shared.contracts import About
from shared.errors import RelaisError
from shared.events import EventType
from shared.fhir.builders import RELAIS_ENDPOINT, message_bundle
from shared.fhir.encounter import PatientIdentity
from shared.routing import route

CHUNK = 250  # lines per transaction: commits amortised, a crash loses at most one uncommitted chunk (never half a line)
T = TypeVar("T")
R = TypeVar("R")


def _in_chunks(uow: AdmissionsUnitOfWork, items: Sequence[T], apply: Callable[[list[T]], list[R]]) -> list[R]:
    results: list[R] = []
    for start in range(0, len(items), CHUNK):
        with uow:
            results += apply(list(items[start : start + CHUNK]))
            uow.commit()
    return results


@dataclass(frozen=True)
class _Line:
    line: PanelLine
    patient: PatientIdentity
    key: str


def _confirm(uow: AdmissionsUnitOfWork, listed: dict[str, PanelMemberRow], cmd: UpdatePanel, key: str,
             careteam_id: str, now: datetime) -> None:  # fmt: skip
    row = listed.get(key) or PanelMemberRow(
        team_org_id=cmd.team_org_id, patient_key=key, group_id=cmd.group_id, careteam_id=careteam_id
    )
    row.group_id, row.careteam_id, row.confirmed_at, row.warned_at = cmd.group_id, careteam_id, now, None
    uow.session.add(row)


def _enrol_chunk(
    cmd: UpdatePanel, chunk: list[_Line], uow: AdmissionsUnitOfWork, deps: Deps, *, prefetch: bool = True
) -> list[LineReport]:
    now = deps.clock()
    panels = PanelRepository(uow.session)
    keys = [item.key for item in chunk]
    own = panels.own_careteams(cmd.team_org_id, keys)
    listed = panels.listed(cmd.team_org_id, keys)
    facts = ChunkFacts.read(uow.session, [key for key in keys if key not in own])  # what the handler will read
    reports = []
    for item in chunk:
        known = own.get(item.key)
        if known is not None:  # nothing to enrol: the upload confirms the entry
            _confirm(uow, listed, cmd, item.key, known.id, now)
            outcome = Outcome.ALREADY_YOURS if known.status == "active" else Outcome.CHANGE_REQUESTED
            reports.append(LineReport(item.line.position, outcome))
            continue
        # Nobody treats the patient: the handler's reads come from the chunk's; else a savepoint of its own.
        free = prefetch and item.key not in facts.active
        line_uow = Prefetched.inside(uow, facts) if free else Savepoint.inside(uow)
        command = EnrolPatient(cmd.team_org_id, item.patient, (), None, item.line.postal_code)
        try:
            recorded = enrol_patient(command, line_uow, deps)
        except RelaisError as exc:
            reports.append(LineReport(item.line.position, Outcome.REFUSED, exc.diagnostics))
            continue
        careteam = facts.added.get(item.key) if free else uow.session.get(CareTeamRow, recorded.careteam_id)
        if careteam is None:  # pragma: no cover - the handler returned the row it wrote or found
            raise RuntimeError("an enrolment returned no CareTeam")
        _confirm(uow, listed, cmd, item.key, careteam.id, now)
        outcome = Outcome.ENROLLED if careteam.status == "active" else Outcome.CHANGE_REQUESTED
        reports.append(LineReport(item.line.position, outcome))
    facts.write_postal_codes(uow.session)
    return reports


def _enrol_whole_chunk(cmd: UpdatePanel, chunk: list[_Line], uow: AdmissionsUnitOfWork, deps: Deps) -> list[LineReport]:
    """The chunk with reads shared; if another enrolment of one of its patients committed meanwhile, the chunk is
    replayed line by line, each in its own savepoint (the handler then records a change of team)."""
    try:
        reports = _enrol_chunk(cmd, chunk, uow, deps)
        uow.session.flush()
        return reports
    except IntegrityError:
        uow.rollback()
        return _enrol_chunk(cmd, chunk, uow, deps, prefetch=False)


def _leave(team_org_id: str, key: str, uow: AdmissionsUnitOfWork, deps: Deps) -> str | None:
    """Inside a chunk: take the patient off the team's list and end the team's enrolment (or withdraw its pending
    request); the CareTeam id, or None when the patient was not on the list."""
    panels = PanelRepository(uow.session)
    listed = panels.get(team_org_id, key)
    if listed is None:
        return None
    careteam = panels.own_careteams(team_org_id, [key]).get(key)
    if careteam is not None:
        end_enrolment(EndEnrolment(team_org_id, careteam.id), Savepoint.inside(uow), deps)
    panels.remove(team_org_id, key)
    return careteam.id if careteam is not None else listed.careteam_id


def _readable(cmd: UpdatePanel, deps: Deps) -> tuple[list[LineReport | _Line], set[str]]:
    """Each line as a patient to apply, or its refusal (unreadable, or the same patient as an earlier line)."""
    items: list[LineReport | _Line] = []
    first_at: dict[str, str] = {}
    for line in cmd.lines:
        if line.patient is None:
            items.append(LineReport(line.position, Outcome.REFUSED, line.refused))
            continue
        key = deps.pseudonymise(line.patient)
        if key in first_at:
            items.append(LineReport(line.position, Outcome.REFUSED, f"the same patient as {first_at[key]}"))
            continue
        first_at[key] = line.position
        items.append(_Line(line, line.patient, key))
    return items, set(first_at)


def update_panel(cmd: UpdatePanel, uow: AdmissionsUnitOfWork, deps: Deps) -> dict[str, Any]:
    """Apply each line in order; the report says what became of each (the same upload twice changes nothing)."""
    items, keys = _readable(cmd, deps)
    lines = [item for item in items if isinstance(item, _Line)]
    if cmd.mode == "remove":

        def remove(chunk: list[_Line]) -> list[LineReport]:
            left = [_leave(cmd.team_org_id, item.key, uow, deps) for item in chunk]
            return [
                LineReport(i.line.position, Outcome.REMOVED if c else Outcome.NOT_LISTED)
                for i, c in zip(chunk, left, strict=True)
            ]

        done = _in_chunks(uow, lines, remove)
    else:
        done = _in_chunks(uow, lines, lambda chunk: _enrol_whole_chunk(cmd, chunk, uow, deps))
    applied = iter(done)
    reports = [item if isinstance(item, LineReport) else next(applied) for item in items]
    if cmd.mode == "replace":
        with uow:
            others = [
                k for k in PanelRepository(uow.session).keys_of_group(cmd.team_org_id, cmd.group_id) if k not in keys
            ]

        def let_go(chunk: list[str]) -> list[LineReport]:
            ids = [_leave(cmd.team_org_id, key, uow, deps) for key in chunk]
            return [LineReport(f"CareTeam/{careteam_id}", Outcome.LEFT, "not in the new list") for careteam_id in ids]

        reports += _in_chunks(uow, others, let_go)
    return report_outcome(reports)


def _tell_team(uow: AdmissionsUnitOfWork, row: PanelMemberRow, leaves_at: datetime, now: datetime) -> None:
    """The team hears, on its own channels, that a patient of its list leaves it at `leaves_at` unless confirmed."""
    careteam = uow.careteams.get(row.careteam_id)
    if careteam is None or careteam.status != "active":
        return  # a request still waiting: the team is not the patient's treating team yet
    event = EventType.CARETEAM_EXPIRING
    resource = {**render(uow, careteam).resource}
    resource["period"] = {**resource.get("period", {}), "end": instant(leaves_at)}

    def full(message_id: str) -> dict[str, Any]:
        return message_bundle(
            event, source_endpoint=RELAIS_ENDPOINT, focus=[resource], message_id=message_id, timestamp=instant(now)
        )

    notify(
        uow,
        route(event, patient_context(uow, row.patient_key, None, None)),
        event,
        source_id=f"{careteam.id}:{instant(leaves_at)}",  # one notice per confirmation
        about=About(patient_key=row.patient_key, reference=f"CareTeam/{careteam.id}"),
        sender=None,
        occurred_at=instant(now),
        now=now,
        full=full,
    )


def _notices(cmd: ExpirePanels, uow: AdmissionsUnitOfWork, deps: Deps) -> int:
    now = deps.clock()
    period = timedelta(days=deps.settings.panel_confirmation_days)
    notice = timedelta(days=min(deps.settings.panel_notice_days, deps.settings.panel_confirmation_days))
    with uow:
        due = PanelRepository(uow.session).unwarned_since(now - period + notice, cmd.limit)
        for row in due:
            confirmed = row.confirmed_at if row.confirmed_at.tzinfo else row.confirmed_at.replace(tzinfo=UTC)  # SQLite
            _tell_team(uow, row, confirmed + period, now)
            row.warned_at = now
            uow.session.add(row)
        uow.commit()
    return len(due)


def expire_panels(cmd: ExpirePanels, uow: AdmissionsUnitOfWork, deps: Deps) -> int:
    """Teams are told of the patients that will age out within the notice period; then patients no upload confirmed
    within the period leave their team's list (and the team's care). How many left."""
    if deps.settings.panel_notice_days > 0:
        _notices(cmd, uow, deps)
    before = deps.clock() - timedelta(days=deps.settings.panel_confirmation_days)
    with uow:
        due = [
            (r.team_org_id, r.patient_key) for r in PanelRepository(uow.session).unconfirmed_since(before, cmd.limit)
        ]

    def expire(chunk: list[tuple[str, str]]) -> list[str | None]:
        return [_leave(team_org_id, key, uow, deps) for team_org_id, key in chunk]

    return len(_in_chunks(uow, due, expire))
