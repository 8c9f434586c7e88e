"""The FastAPI app factory every service uses: errors as OperationOutcome, request limits, health, metrics, metadata."""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.api.limits import RateLimits, RequestGuard, RequestLimits
from shared.api.responses import FhirResponse
from shared.clock import utcnow
from shared.errors import RelaisError
from shared.fhir.outcome import issue, operation_outcome, outcome_from_error, outcome_from_issues

log = logging.getLogger(__name__)

REQUESTS = Counter("relais_http_requests_total", "HTTP requests", ["service", "method", "route", "status"])
LATENCY = Histogram("relais_http_request_seconds", "HTTP request latency", ["service"])
UNHANDLED = Counter("relais_http_unhandled_errors_total", "Requests answered 500", ["route"])

# Label values are bounded: any other method, and any path no route matched, collapse to one value.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER_METHOD = "OTHER"
UNMATCHED_ROUTE = "unmatched"

_HTTP_ISSUE_CODES = {401: "login", 403: "forbidden", 404: "not-found", 405: "not-supported", 409: "conflict",
                     413: "too-long", 415: "not-supported", 429: "throttled"}


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
            method = scope["method"] if scope["method"] in KNOWN_METHODS else OTHER_METHOD
            REQUESTS.labels(self.service, method, route_label(scope), str(status)).inc()


class CatchAll:
    """Answers any unexpected exception with a 500 OperationOutcome and logs it without request content.

    Starlette's own last-resort handler re-raises so that the server logs the exception, message included;
    the message may quote the request (patient data), so the exception stops here.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_tracking(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, send_tracking)
        except Exception as exc:  # noqa: BLE001 - the last resort: every failure becomes an outcome
            log_unhandled(scope, exc)
            if not started:
                await _internal_error()(scope, receive, send)


def log_unhandled(scope: Scope, exc: BaseException) -> None:
    route = route_label(scope)
    # Exception messages and locals may quote the request (patient data): log the type and the frames only.
    frames = "".join(traceback.format_tb(exc.__traceback__))
    log.error("unhandled %s on %s %s\n%s", type(exc).__name__, scope.get("method"), route, frames)
    UNHANDLED.labels(route).inc()


def _internal_error() -> FhirResponse:
    return _error_response(500, operation_outcome("fatal", "exception", "internal error; see the server log"))


def route_label(scope: Scope) -> str:
    """The matched route's template (`/snp/fhir/Slot/{slot_id}`), never the raw path."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED_ROUTE


def _error_response(status: int, body: dict[str, Any]) -> FhirResponse:
    return FhirResponse(body, status_code=status)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RelaisError)
    async def relais_error(_request: Request, exc: RelaisError) -> FhirResponse:
        return FhirResponse(outcome_from_error(exc), status_code=exc.status_code, headers=exc.headers)

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
    async def unexpected(request: Request, exc: Exception) -> FhirResponse:
        # Reached only by apps without CatchAll (the combined root); Starlette re-raises after this answer.
        log_unhandled(request.scope, exc)
        return _internal_error()


def capability_statement(service: str, resources: Sequence[dict[str, Any]], messaging: bool) -> dict[str, Any]:
    statement: dict[str, Any] = {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": utcnow().date().isoformat(),
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
    max_body_bytes: int | None = None,
    limits: RequestLimits | None = None,
    rate_limits: RateLimits | None = None,
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

    if limits is None:
        limits = RequestLimits() if max_body_bytes is None else RequestLimits(max_body_bytes=max_body_bytes)
    app.state.rate_limits = rate_limits
    # Outermost first: Metrics counts every answer, CatchAll turns any failure below into an outcome.
    app.add_middleware(RequestGuard, limits=limits, rate_limits=rate_limits)
    app.add_middleware(CatchAll)
    app.add_middleware(Metrics, service=service)

    ops = APIRouter(prefix=prefix, tags=["operations"])

    @ops.get("/healthz", summary="Liveness: the process answers")
    async def healthz() -> dict[str, str]:
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
