"""`GET /admissions/teams`: a CPTS, a DAC or a hospital finds a treating team of its territory by name or commune."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from services.admissions import teams
from services.admissions.entrypoints.fhir import Uow
from shared.api.responses import FhirResponse
from shared.auth import Principal, current_principal, require_role
from shared.communes import commune as commune_of
from shared.directory.lookup import DirectoryLookup, communes_named
from shared.errors import BadRequest
from shared.events import Role

Finder = Annotated[Principal, Depends(require_role(Role.CPTS, Role.DAC, Role.HOSPITAL, Role.ADMIN))]
Caller = Annotated[Principal, Depends(current_principal)]
MAX_COMMUNES = 100

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


INSEE_CODE = re.compile(r"^(?:[0-9]{2}|2A|2B)[0-9]{3}$")


@router.get("/communes", summary="Names of communes by INSEE code (the national reference table): what pages show")
def commune_names(
    principal: Caller,
    code: Annotated[list[str] | None, Query(description=f"INSEE codes, at most {MAX_COMMUNES}")] = None,
) -> Response:
    del principal  # any organisation: public reference data, but not an open endpoint
    codes = list(dict.fromkeys(code or []))
    if not codes or len(codes) > MAX_COMMUNES:
        raise BadRequest(f"give 1 to {MAX_COMMUNES} code parameters", expression=["code"])
    if not all(INSEE_CODE.fullmatch(c) for c in codes):
        raise BadRequest("each code is an INSEE commune code (5 characters: digits, 2A or 2B)", expression=["code"])
    found = [(c, commune_of(c)) for c in codes]
    names = [{"code": c, "display": place.name} for c, place in found if place is not None]
    return FhirResponse({"communes": names}, media_type="application/json")
