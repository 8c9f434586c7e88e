"""`GET /admissions/teams`: a CPTS, a DAC or a hospital finds a treating team of its territory by name or commune."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from services.admissions import teams
from services.admissions.entrypoints.fhir import Uow
from shared.api.responses import FhirResponse
from shared.auth import Principal, require_role
from shared.directory.lookup import DirectoryLookup, communes_named
from shared.errors import BadRequest
from shared.events import Role

Finder = Annotated[Principal, Depends(require_role(Role.CPTS, Role.DAC, Role.HOSPITAL, Role.ADMIN))]

router = APIRouter(prefix="/admissions", tags=["directory"])


def _lookup(request: Request) -> DirectoryLookup:
    lookup: DirectoryLookup = request.app.state.directory_lookup
    return lookup


@router.get(
    "/teams",
    summary="Treating teams of the caller's territory by name and/or commune (INSEE code, postal code or name)",
)
def find_teams(
    request: Request,
    principal: Finder,
    uow: Uow,
    name: Annotated[str | None, Query(description="part of the team's name (accents and case ignored)")] = None,
    commune: Annotated[str | None, Query(description="INSEE code, postal code or commune name")] = None,
    count: Annotated[str | None, Query(alias="_count", description=f"at most {teams.MAX_RESULTS}")] = None,
) -> Response:
    name, commune = teams.checked_text(name, "name"), teams.checked_text(commune, "commune")
    limit = teams.checked_count(count)
    if name is None and commune is None:
        raise BadRequest("give name, commune or both", expression=["name", "commune"])
    communes = communes_named(commune) if commune is not None else None
    if communes is not None and not communes:
        raise BadRequest("commune is not an INSEE code, a postal code or a commune name", expression=["commune"])
    lookup = _lookup(request)
    scope = teams.scope_for(principal.role, principal.organisation_id, uow, lookup)
    found, more = lookup.search_teams(name=name, communes=communes, scope=scope, limit=limit)
    body = {"teams": [teams.team_view(team) for team in found], "count": len(found), "more": more}
    return FhirResponse(body, media_type="application/json")
