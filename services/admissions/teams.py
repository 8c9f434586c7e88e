"""Finding a team: the scope a coordinator searches in, and the answer's shape (views; reads only)."""

from __future__ import annotations

from typing import Any

from services.admissions.uow import AdmissionsUnitOfWork
from shared.communes import commune
from shared.directory.lookup import DirectoryLookup, Scope, TeamFound, communes_of_postal_codes, department_of
from shared.errors import BadRequest
from shared.events import Role

MAX_RESULTS = 50
DEFAULT_RESULTS = 20
MAX_TEXT = 100


def scope_for(role: Role, organisation_id: str, uow: AdmissionsUnitOfWork, lookup: DirectoryLookup) -> Scope:
    """A CPTS or a DAC searches the communes of the postal codes mapped to it; a hospital its own département (from
    its directory entry); an administrator everywhere."""
    if role is Role.ADMIN:
        return Scope()
    if role in (Role.CPTS, Role.DAC):
        with uow:
            postal_codes = [row.postal_code for row in uow.territories.listed(organisation_id)]
        return Scope(communes=communes_of_postal_codes(postal_codes))
    insee = lookup.commune_of(organisation_id)
    return Scope(department=department_of(insee)) if insee else Scope(communes=frozenset())


def checked_text(value: str | None, parameter: str) -> str | None:
    if value is None:
        return None
    value = value.strip()
    if len(value) < 2 or len(value) > MAX_TEXT or any(not c.isprintable() for c in value):
        raise BadRequest(f"{parameter} must be 2 to {MAX_TEXT} printable characters", expression=[parameter])
    return value


def checked_count(value: str | None) -> int:
    if value is None:
        return DEFAULT_RESULTS
    if not value.isdigit() or not 1 <= int(value) <= MAX_RESULTS:
        raise BadRequest(f"_count must be a whole number from 1 to {MAX_RESULTS}", expression=["_count"])
    return int(value)


def team_view(team: TeamFound) -> dict[str, Any]:
    place = commune(team.commune) if team.commune else None
    return {
        "id": team.id,
        "name": team.name,
        "registered": team.registered,
        "address": team.address,
        "postalCode": team.postal_code,
        "commune": {"code": team.commune, "display": place.name if place else None} if team.commune else None,
        "professions": [{"code": p.code, "display": p.display, "count": p.count} for p in team.professions],
    }
