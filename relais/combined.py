"""`relais run`: every service in one process; requests go to the service owning the path prefix."""

from __future__ import annotations

import json
from collections.abc import Sequence
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from starlette.types import Message, Receive, Scope, Send

from shared.api.app import capability_statement, install_error_handlers
from shared.api.limits import AnyAddressBlock, RequestGuard, RequestLimits
from shared.api.responses import FhirResponse
from shared.fhir.nde import (
    DECLARATION_PROFILE,
    NDE_ADMISSION_ENDPOINT,
    NDE_BASE,
    NDE_DISCHARGE_ENDPOINT,
    NDE_ENDPOINT,
    NOTIFICATION_PROFILE,
    SUBSCRIPTION_PROFILE,
    declared_code,
)
from shared.service import Service

HOME_PAGE = "/discharge/app/"


async def _buffered(receive: Receive, limit: int) -> tuple[bytes, Receive]:
    """The request body read up to `limit` bytes, and a receive callable that replays it before the rest."""
    chunks: list[bytes] = []
    size, more = 0, True
    while more and size <= limit:
        message = await receive()
        if message["type"] != "http.request":  # the client went away: let the app see it
            return b"", _replay([message], receive)
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        more = message.get("more_body", False)
    body = b"".join(chunks)
    return body, _replay([{"type": "http.request", "body": body, "more_body": more}], receive)


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replay() -> Message:
        return pending.pop(0) if pending else await receive()

    return replay


NDE_METADATA = f"{NDE_BASE}/metadata"
NDE_RESOURCES = (
    {
        "type": "CommunicationRequest",
        "supportedProfile": [DECLARATION_PROFILE, NOTIFICATION_PROFILE],
        "interaction": [{"code": "create"}, {"code": "read"}],
        "documentation": "create: an nde-eventdeclaration (ADM, SOR); read: one of your nde-notificationrequests",
    },
    {
        "type": "Subscription",
        "supportedProfile": [SUBSCRIPTION_PROFILE],
        "interaction": [{"code": "create"}, {"code": "read"}, {"code": "delete"}],
        "documentation": "an nde-subscription for one patient, rest-hook channel",
    },
)


def nde_target(method: str, path: str, body: bytes) -> str:
    """Where an NdE request lands (docs/architecture.md#public-surface): a declaration to the service of its event
    (ADM admissions, SOR discharge; anything unreadable to admissions, which answers the 4xx), everything else to
    notifications."""
    if path.rstrip("/") == NDE_METADATA:
        return NDE_METADATA  # answered by the combined root
    if method == "POST" and path.rstrip("/") == NDE_ENDPOINT:
        try:
            code = declared_code(json.loads(body))
        except (ValueError, RecursionError):
            code = None
        return NDE_DISCHARGE_ENDPOINT if code == "SOR" else NDE_ADMISSION_ENDPOINT
    return "/notifications" + path


class PrefixDispatcher:
    """Routes `/admissions/...` to the admissions app (paths unchanged), `/nde/fhir/...` to the service that
    serves that NdE interaction, anything else to the root app."""

    def __init__(self, root: FastAPI, services: Sequence[Service]) -> None:
        self.root = root
        self.apps = {f"/{service.name}": service.app for service in services}
        # A larger declaration is not read here: the service's request guard answers 413 for it.
        self.peek_bytes = max((service.runtime.settings.max_body_bytes for service in services), default=1_000_000)
        # The body is read here, before any service sees the request: under the same deadline, size cap and
        # failed-authentication block as every service's own door.
        limits = [RequestLimits.from_settings(service.runtime.settings) for service in services]
        self.nde_guard = RequestGuard(
            self._route_nde,
            min(limits, key=lambda limit: limit.body_timeout_seconds) if limits else RequestLimits(),
            AnyAddressBlock([rate for service in services if (rate := service.app.state.rate_limits) is not None]),
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("path", "").startswith(NDE_BASE + "/"):
            await self.nde_guard(scope, receive, send)
            return
        await self._route(scope, receive, send)

    async def _route_nde(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        body = b""
        if scope.get("method") == "POST":
            body, receive = await _buffered(receive, self.peek_bytes)
        target = nde_target(scope.get("method", ""), path, body)
        await self._route({**scope, "path": target, "raw_path": target.encode()}, receive, send)

    async def _route(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            prefix = "/" + scope.get("path", "").lstrip("/").split("/", 1)[0]
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

    @root.get(NDE_METADATA, include_in_schema=False)
    def nde_metadata() -> FhirResponse:
        return FhirResponse(capability_statement("NdE", NDE_RESOURCES, messaging=False))

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
