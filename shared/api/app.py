"""The FastAPI app factory every service uses: errors as OperationOutcome, body limit, health, metrics, metadata."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.api.responses import FhirResponse
from shared.errors import PayloadTooLarge, RelaisError
from shared.fhir.outcome import issue, operation_outcome, outcome_from_error, outcome_from_issues

log = logging.getLogger(__name__)

REQUESTS = Counter("relais_http_requests_total", "HTTP requests", ["service", "method", "status"])
LATENCY = Histogram("relais_http_request_seconds", "HTTP request latency", ["service"])

_HTTP_ISSUE_CODES = {401: "login", 403: "forbidden", 404: "not-found", 405: "not-supported", 409: "conflict",
                     413: "too-long", 415: "not-supported", 429: "throttled"}


class BodySizeLimit:
    """Refuses bodies over the limit with 413 before the route reads them, declared length or streamed."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        # Buffer the body up to the limit (at most max_bytes), then replay it to the app.
        chunks: list[bytes] = []
        received = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, _replay([], message, receive), send)
                return
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay(chunks, None, receive), send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        error = PayloadTooLarge(f"request body exceeds {self.max_bytes} bytes")
        response = FhirResponse(outcome_from_error(error), status_code=error.status_code)
        await response(scope, receive, send)


class Metrics:
    """Request count and latency per service (a plain ASGI middleware: BaseHTTPMiddleware costs a task per call)."""

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            LATENCY.labels(self.service).observe(time.perf_counter() - started)
            REQUESTS.labels(self.service, scope["method"], str(status)).inc()


def _replay(chunks: list[bytes], pending: Message | None, receive: Receive) -> Receive:
    """A receive callable that first hands back the buffered body, then defers to the server."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return pending or {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        return await receive()

    return replay


def _error_response(status: int, body: dict[str, Any]) -> FhirResponse:
    return FhirResponse(body, status_code=status)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RelaisError)
    async def relais_error(_request: Request, exc: RelaisError) -> FhirResponse:
        return _error_response(exc.status_code, outcome_from_error(exc))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> FhirResponse:
        issues = [
            issue("error", "invalid", str(error.get("msg")), [".".join(str(p) for p in error.get("loc", ()))])
            for error in exc.errors()
        ]
        return _error_response(400, outcome_from_issues(issues))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> FhirResponse:
        code = _HTTP_ISSUE_CODES.get(exc.status_code, "processing")
        return _error_response(exc.status_code, operation_outcome("error", code, str(exc.detail)))

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, exc: Exception) -> FhirResponse:
        log.exception("unhandled error", exc_info=exc)
        # Never leak internals (or patient data inside them) to the caller.
        return _error_response(500, operation_outcome("fatal", "exception", "internal error; see the server log"))


def capability_statement(service: str, resources: Sequence[dict[str, Any]], messaging: bool) -> dict[str, Any]:
    statement: dict[str, Any] = {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": datetime.now(UTC).date().isoformat(),
        "kind": "instance",
        "software": {"name": f"Relais {service}"},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json"],
        "rest": [{"mode": "server", "resource": list(resources)}],
    }
    if messaging:
        statement["messaging"] = [{"documentation": f"POST /{service}/fhir/$process-message with a message Bundle"}]
        statement["rest"][0]["operation"] = [
            {"name": "process-message", "definition": "http://hl7.org/fhir/OperationDefinition/MessageHeader-process-message"}
        ]
    return statement


def create_service_app(
    *,
    service: str,
    title: str,
    description: str,
    routers: Sequence[APIRouter],
    max_body_bytes: int,
    ready_checks: dict[str, Callable[[], bool]],
    degraded_checks: dict[str, Callable[[], bool]] | None = None,
    capability: dict[str, Any],
    lifespan_start: Callable[[], None] | None = None,
    lifespan_stop: Callable[[], None] | None = None,
) -> FastAPI:
    """A service app with every route under `/{service}`, so combined and separate modes answer the same paths."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        if lifespan_start:
            lifespan_start()
        try:
            yield
        finally:
            if lifespan_stop:
                lifespan_stop()

    prefix = f"/{service}"
    app = FastAPI(
        title=title,
        description=description,
        version="0.1.0",
        docs_url=f"{prefix}/docs",
        redoc_url=None,
        openapi_url=f"{prefix}/openapi.json",
        lifespan=lifespan,
    )
    install_error_handlers(app)

    app.add_middleware(Metrics, service=service)
    app.add_middleware(BodySizeLimit, max_bytes=max_body_bytes)

    ops = APIRouter(prefix=prefix, tags=["operations"])

    @ops.get("/healthz", summary="Liveness: the process answers")
    def healthz() -> dict[str, str]:
        return {"status": "ok", "service": service}

    @ops.get("/readyz", summary="Readiness: the database answers (503 if not); the bus state is reported")
    def readyz() -> Response:
        checks = {name: _safe(check) for name, check in ready_checks.items()}
        # The outbox keeps writes safe while the broker is away: a missing bus degrades, it does not stop intake.
        optional = {name: _safe(check) for name, check in (degraded_checks or {}).items()}
        status = 200 if all(checks.values()) else 503
        state = "unavailable" if status != 200 else ("ok" if all(optional.values()) else "degraded")
        body = {"status": state, "checks": {**checks, **optional}}
        return FhirResponse(body, status_code=status, media_type="application/json")

    @ops.get("/metrics", summary="Prometheus metrics")
    def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @ops.get("/metadata", summary="FHIR CapabilityStatement", response_class=FhirResponse)
    def metadata() -> FhirResponse:
        return FhirResponse(capability)

    app.include_router(ops)
    for router in routers:
        app.include_router(router)
    return app


def _safe(check: Callable[[], bool]) -> bool:
    try:
        return bool(check())
    except Exception:  # noqa: BLE001 - a failing check means "not ready", never a 500
        return False
