"""`/{service}/app/teams`: the treating teams by name, for the CPTS board's "propose a team" field.

A page helper on the session (CPTS only): organisation names and ids of the directory, no patient data. The
admissions service's team search can later answer instead, behind the same field.
"""

from __future__ import annotations

import unicodedata

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from shared.auth import Directory
from shared.events import Role
from shared.web.sessions import SessionStore

MAX_TEAMS = 20


def _folded(text: str) -> str:
    # "Monthureux" finds "MSP de Monthureux-sur-Saône"; accents and case do not matter.
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c)).casefold()


def teams_router(service: str, directory: Directory, store: SessionStore) -> APIRouter:
    router = APIRouter(prefix=f"/{service}/app", include_in_schema=False)

    @router.get("/teams")
    async def teams(request: Request, q: str = "") -> JSONResponse:
        session_id = request.cookies.get(store.config.cookie_name, "")
        principal = await run_in_threadpool(store.authenticate, session_id) if session_id else None
        if principal is None:
            return JSONResponse({"error": "sign in first"}, status_code=401)
        if principal.role != Role.CPTS:
            return JSONResponse({"error": "for the CPTS"}, status_code=403)
        wanted = _folded(q.strip())[:100]
        found = [
            {"id": team.organisation_id, "name": team.name}
            for team in await run_in_threadpool(directory.list)
            if team.role == Role.TEAM and (not wanted or wanted in _folded(f"{team.name} {team.organisation_id}"))
        ]
        return JSONResponse(found[:MAX_TEAMS], headers={"Cache-Control": "no-store"})

    return router
