"""`relais run`: every service in one process; requests go to the service owning the path prefix."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from starlette.types import Receive, Scope, Send

from shared.api.app import install_error_handlers
from shared.service import Service

HOME_PAGE = "/discharge/app/"


class PrefixDispatcher:
    """Routes `/admissions/...` to the admissions app (paths unchanged), anything else to the root app."""

    def __init__(self, root: FastAPI, services: Sequence[Service]) -> None:
        self.root = root
        self.apps = {f"/{service.name}": service.app for service in services}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            path = scope.get("path", "")
            prefix = "/" + path.lstrip("/").split("/", 1)[0]
            app = self.apps.get(prefix)
            if app is not None:
                await app(scope, receive, send)
                return
        await self.root(scope, receive, send)


def combined_app(services: Sequence[Service]) -> PrefixDispatcher:
    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        # Sub-apps never see lifespan events through the dispatcher: run theirs from here.
        async with AsyncExitStack() as stack:
            for service in services:
                await stack.enter_async_context(service.app.router.lifespan_context(service.app))
            yield

    root = FastAPI(title="Relais", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    install_error_handlers(root)

    @root.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok", "services": [service.name for service in services]}

    @root.get("/")
    def index() -> dict:
        return {
            "name": "Relais",
            "pages": "/app/",
            "services": {service.name: {"docs": f"/{service.name}/docs"} for service in services},
        }

    @root.get("/app", include_in_schema=False)
    @root.get("/app/", include_in_schema=False)
    def pages() -> RedirectResponse:
        # A short address for people; the pages themselves live under their service's prefix.
        return RedirectResponse(HOME_PAGE, status_code=303)

    return PrefixDispatcher(root, services)
