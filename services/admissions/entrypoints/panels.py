"""A team's patient list (panel): `PUT /admissions/fhir/Group/{id}` replaces it, `$add` and `$remove` change it.

Each takes a FHIR Group (Da Vinci Member Attribution shape), `$add`/`$remove` also a Parameters of `memberId`, and
all three a CSV (`Content-Type: text/csv`; NIR, family name, given name, birth date, postal code), which is what
the worklist page posts. The answer is an OperationOutcome with one issue per line.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from services.admissions import commands, panels
from services.admissions.entrypoints.fhir import Bus, Team
from shared.api.body import RawBody
from shared.api.responses import FhirResponse
from shared.errors import BadRequest
from shared.fhir.intake import check_content_type, parse_json

router = APIRouter(prefix="/admissions/fhir", tags=["panel"])


def _lines(request: Request, body: bytes, bus: Bus, *, parameters: bool) -> tuple[commands.PanelLine, ...]:
    maximum = bus.deps.settings.panel_max_members
    if (request.headers.get("content-type") or "").split(";")[0].strip().lower() == "text/csv":
        return panels.csv_lines(body, maximum)
    check_content_type(request.headers.get("content-type"))
    data: dict[str, Any] = parse_json(body)
    if parameters and data.get("resourceType") == "Parameters":
        return panels.parameters_lines(data, maximum)
    return panels.group_lines(data, maximum)


def _apply(principal: Team, bus: Bus, group_id: str, mode: str, lines: tuple[commands.PanelLine, ...]) -> FhirResponse:
    command = commands.UpdatePanel(principal.organisation_id, group_id, mode, lines)
    return FhirResponse(bus.handle(command))


@router.put("/Group/{group_id}", summary="Replace the team's patient list (Group, or text/csv): a report per line")
def replace_panel(group_id: str, request: Request, principal: Team, bus: Bus, body: RawBody) -> FhirResponse:
    panels.checked_group_id(group_id)
    lines = _lines(request, body, bus, parameters=False)
    if request.headers.get("content-type", "").startswith("application"):
        sent_id = parse_json(body).get("id")
        if sent_id is not None and sent_id != group_id:
            raise BadRequest("Group.id must be the id in the URL", expression=["Group.id"])
    return _apply(principal, bus, group_id, "replace", lines)


@router.post("/Group/{group_id}/$add", summary="Enrol or confirm patients on the list (Group, Parameters or text/csv)")
def add_to_panel(group_id: str, request: Request, principal: Team, bus: Bus, body: RawBody) -> FhirResponse:
    panels.checked_group_id(group_id)
    return _apply(principal, bus, group_id, "add", _lines(request, body, bus, parameters=True))


@router.post("/Group/{group_id}/$remove", summary="Take patients off the list: their enrolment with the team ends")
def remove_from_panel(group_id: str, request: Request, principal: Team, bus: Bus, body: RawBody) -> FhirResponse:
    panels.checked_group_id(group_id)
    return _apply(principal, bus, group_id, "remove", _lines(request, body, bus, parameters=True))
