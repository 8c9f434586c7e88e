"""Reads of the discharge service: a Task for the organisations entitled to it, and the mirrored context the
rules need. Nothing here writes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select
from sqlmodel import col

from services.discharge import domain
from services.discharge.adapters.orm import DischargeRow, FollowupRow, HandoffRow, OrientationRow
from services.discharge.domain import MirrorState, TerritoryState
from services.discharge.resources import (
    followup_task,
    handoff_task,
    orientation_for_hospital,
    orientation_task,
    without_owner,
)
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
        dac_stays=tuple((s["hospital"], s["encounter"], s["dac_org_id"]) for s in row.dac_stays or ()),
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
    dac = None
    if mirror is not None:  # a case on the patient, or on this very stay
        patient_wide = mirror.dac_org_id if mirror.dac_case_open else None
        dac = patient_wide or mirror.stay_dac(discharge.hospital_org_id, discharge.encounter_key)
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


def render_handoff(uow: DischargeUnitOfWork, handoff: HandoffRow, discharge: DischargeRow) -> dict[str, Any]:
    """A handoff as its team may read it: in full, or what it needs to decide when the CPTS proposed it."""
    followups = uow.followups.for_discharge(discharge.id) if handoff.orientation_id else ()
    return handoff_task(handoff, discharge, (discharge.payload or {}).get("letter"), followups)


def read_task(uow: DischargeUnitOfWork, task_id: str, organisation_id: str, role: Role | str) -> dict[str, Any]:
    """A Task for its care circle (kernel policy): the hospital that sent it, the team it targets, a DAC with an
    open case; an orientation for the CPTS that owns it and the hospital; anyone else gets the 404 an unknown
    Task gets."""
    what = f"Task/{task_id}"
    with uow:
        handoff = uow.handoffs.get(task_id)
        if handoff is not None:
            discharge = uow.discharges.require(handoff.discharge_id)
            seen = require(role, organisation_id, _circle(uow, discharge, handoff.team_org_id), READ, what)
            return _as_seen_by(render_handoff(uow, handoff, discharge), seen, handoff.status in TEAM_KNOWN)
        orientation = uow.orientations.get(task_id)
        if orientation is not None and organisation_id in (orientation.cpts_org_id, orientation.hospital_org_id):
            return _render_orientation(uow, orientation, organisation_id)
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


# --- the worklist: FHIR search over the caller's own Tasks ---------------------------------------------------

MAX_COUNT = 100
DEFAULT_COUNT = 20


@dataclass(frozen=True)
class TaskQuery:
    """A parsed `GET /discharge/fhir/Task`: every filter is ANDed, values within one are ORed (FHIR search)."""

    statuses: frozenset[str] = frozenset()
    codes: tuple[tuple[str | None, str], ...] = ()
    updated_from: datetime | None = None  # inclusive
    updated_before: datetime | None = None  # exclusive
    count: int = DEFAULT_COUNT
    offset: int = 0


def _code_wanted(query: TaskQuery, system: str, code: str) -> bool:
    return not query.codes or any(c == code and s in (None, system) for s, c in query.codes)


def _rows(
    uow: DischargeUnitOfWork,
    model: Any,
    owners: tuple[Any, ...],
    organisation_id: str,
    query: TaskQuery,
    codes: list[str] | None = None,
) -> list[tuple[datetime, str, Any]]:
    """One table's share of a page: rows the organisation owns or asked for, newest change first."""
    stmt = select(model).where(or_(*(col(owner) == organisation_id for owner in owners)))
    if codes:
        stmt = stmt.where(col(model.code).in_(codes))
    stmt = _filter(stmt, model, query)
    return [(domain.as_utc(r.updated_at), r.id, r) for r in uow.session.execute(stmt).scalars()]


def _filter(stmt: Any, model: Any, query: TaskQuery) -> Any:
    if query.statuses:
        stmt = stmt.where(col(model.status).in_(sorted(query.statuses)))
    if query.updated_from is not None:
        stmt = stmt.where(col(model.updated_at) >= query.updated_from)
    if query.updated_before is not None:
        stmt = stmt.where(col(model.updated_at) < query.updated_before)
    return stmt.order_by(col(model.updated_at).desc(), col(model.id)).limit(query.offset + query.count + 1)


def search_tasks(
    uow: DischargeUnitOfWork, organisation_id: str, query: TaskQuery
) -> tuple[list[dict[str, Any]], bool]:
    """The caller's Tasks (it owns them or asked for them), newest change first; True when there is a next page.

    Each table gives at most offset + count + 1 rows, so a page costs what it shows, whatever the caller owns."""
    found: list[tuple[datetime, str, Any]] = []
    with uow:
        if _code_wanted(query, domain.TASK_CODE_SYSTEM, "handoff"):
            owners: tuple[Any, ...] = (HandoffRow.team_org_id, HandoffRow.hospital_org_id)
            found += _rows(uow, HandoffRow, owners, organisation_id, query)
        if _code_wanted(query, domain.TASK_CODE_SYSTEM, "orientation"):
            owners = (OrientationRow.cpts_org_id, OrientationRow.hospital_org_id)
            found += _rows(uow, OrientationRow, owners, organisation_id, query)
        followup_codes = [c for s, c in query.codes if s in (None, domain.FOLLOWUP_SYSTEM)]
        if not query.codes or followup_codes:
            owners = (FollowupRow.team_org_id, FollowupRow.hospital_org_id)
            found += _rows(uow, FollowupRow, owners, organisation_id, query, codes=followup_codes)
        found.sort(key=lambda item: (-item[0].timestamp(), item[1]))
        page = found[query.offset : query.offset + query.count]
        tasks = [_render_row(uow, row, organisation_id) for _, _, row in page]
    return tasks, len(found) > query.offset + query.count


def _render_row(uow: DischargeUnitOfWork, row: Any, organisation_id: str) -> dict[str, Any]:
    if isinstance(row, OrientationRow):
        return _render_orientation(uow, row, organisation_id)
    discharge = uow.discharges.require(row.discharge_id)
    # The sending hospital sees the owning team only once it has accepted, as in read_task.
    hospital_only = organisation_id == row.hospital_org_id and organisation_id != row.team_org_id
    if isinstance(row, HandoffRow):
        task = render_handoff(uow, row, discharge)
        return without_owner(task) if hospital_only and row.status not in TEAM_KNOWN else task
    task = followup_task(row, discharge, row.team_org_id)
    if hospital_only and not any(h.status in TEAM_KNOWN for h in uow.handoffs.for_discharge(discharge.id)):
        return without_owner(task)
    return task


def _render_orientation(uow: DischargeUnitOfWork, row: OrientationRow, organisation_id: str) -> dict[str, Any]:
    """The CPTS sees the team it proposed; the discharging hospital does not, until that team accepts."""
    discharge = uow.discharges.require(row.discharge_id)
    task = orientation_task(row, discharge, uow.followups.for_discharge(discharge.id))
    return task if organisation_id == row.cpts_org_id else orientation_for_hospital(task)


def searchset(tasks: list[dict[str, Any]], base: str, self_url: str, next_url: str | None) -> dict[str, Any]:
    links = [{"relation": "self", "url": self_url}]
    if next_url:
        links.append({"relation": "next", "url": next_url})
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "link": links,
        "entry": [
            {"fullUrl": f"{base}/Task/{task['id']}", "resource": task, "search": {"mode": "match"}} for task in tasks
        ],
    }
