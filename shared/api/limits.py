"""Request limits checked before any route or FHIR model sees a request: size, time, shape, rate.

- `RequestGuard` (ASGI): body read timeout (408), oversized bodies drained then answered 413 (the client
  sees the answer instead of a reset), NUL bytes in path or query refused, JSON bodies checked for depth,
  Bundle entries, array and string sizes, NUL characters (413/422) off the event loop when large.
- `RateLimits`: per-organisation request budget (429 + Retry-After) and failed authentications per client
  address, on the `limits` library (moving windows, in process memory).
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import anyio
from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.api.responses import FhirResponse
from shared.errors import BadRequest, PayloadTooLarge, RelaisError, TooManyRequests, Unprocessable
from shared.fhir.offload import off_the_lock
from shared.fhir.outcome import outcome_from_error

# Bodies above this are parsed for the checks in a worker thread, so the event loop keeps answering.
_THREAD_THRESHOLD = 32_768
_FORM_TYPES = (b"application/x-www-form-urlencoded", b"multipart/form-data")
_ELEMENT_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


@dataclass(frozen=True)
class RequestLimits:
    max_body_bytes: int = 1_000_000
    max_drain_bytes: int = 32_000_000
    body_timeout_seconds: float = 30.0
    max_bundle_entries: int = 1000
    max_json_depth: int = 32
    max_json_string_chars: int = 100_000
    max_json_array_items: int = 5000

    @classmethod
    def from_settings(cls, settings: Any) -> RequestLimits:
        return cls(
            max_body_bytes=settings.max_body_bytes,
            max_drain_bytes=settings.http_max_drain_bytes,
            body_timeout_seconds=settings.http_body_timeout_seconds,
            max_bundle_entries=settings.max_bundle_entries,
            max_json_depth=settings.max_json_depth,
            max_json_string_chars=settings.max_json_string_chars,
            max_json_array_items=settings.max_json_array_items,
        )


class RequestTimeout(RelaisError):
    status_code, issue_code = 408, "timeout"


# --- JSON shape ---------------------------------------------------------------------------------

class DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document = dict(pairs)
    if len(document) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise DuplicateKey(key)
            seen.add(key)
    return document


def check_json(body: bytes, limits: RequestLimits) -> None:
    """Raise PayloadTooLarge/Unprocessable if a JSON body breaks a limit, BadRequest if an object repeats a key
    (a parser would keep either value); return quietly for non-JSON (the route then answers its own 400)."""
    try:
        document = json.loads(body, object_pairs_hook=_unique_keys)
    except DuplicateKey as exc:
        # Element names are echoed; any other key is not (it could be anything the sender typed).
        name = exc.key if _ELEMENT_NAME.fullmatch(exc.key) else "(a member)"
        raise BadRequest(f"the JSON object member {name!r} appears twice in one object", expression=[name]) from None
    except RecursionError as exc:  # the C parser recurses: deeper than the interpreter allows
        raise Unprocessable(f"JSON nested deeper than {limits.max_json_depth} levels",
                            issue_code="too-costly") from exc
    except (ValueError, UnicodeDecodeError):
        return
    check_document(document, limits)


def check_document(document: Any, limits: RequestLimits) -> None:
    stack: list[tuple[Any, int, str]] = [(document, 1, "$")]
    while stack:
        node, depth, where = stack.pop()
        if depth > limits.max_json_depth:
            raise Unprocessable(f"JSON nested deeper than {limits.max_json_depth} levels",
                                issue_code="too-costly")
        if isinstance(node, dict):
            if node.get("resourceType") == "Bundle":
                entries = node.get("entry")
                if isinstance(entries, list) and len(entries) > limits.max_bundle_entries:
                    raise PayloadTooLarge(f"a Bundle may hold at most {limits.max_bundle_entries} entries",
                                          expression=[f"{where}.entry"])
            for key, value in node.items():
                _check_string(key, limits, where)
                stack.append((value, depth + 1, f"{where}.{key}" if len(where) < 200 else where))
        elif isinstance(node, list):
            if len(node) > limits.max_json_array_items:
                raise PayloadTooLarge(f"arrays may hold at most {limits.max_json_array_items} items",
                                      expression=[where])
            stack.extend((item, depth + 1, where) for item in node)
        elif isinstance(node, str):
            _check_string(node, limits, where)


def _check_string(value: str, limits: RequestLimits, where: str) -> None:
    if len(value) > limits.max_json_string_chars:
        raise PayloadTooLarge(f"strings may hold at most {limits.max_json_string_chars} characters",
                              expression=[where])
    if "\x00" in value:
        raise Unprocessable("text must not contain NUL characters", expression=[where])


# --- the ASGI guard -----------------------------------------------------------------------------

class AddressBlocks(Protocol):
    def address_blocked(self, address: str) -> int | None: ...


class AnyAddressBlock:
    """Blocked if any of these budgets is spent: a door that serves several services checks them all."""

    def __init__(self, budgets: Sequence[AddressBlocks]) -> None:
        self.budgets = list(budgets)

    def address_blocked(self, address: str) -> int | None:
        waits = [wait for budget in self.budgets if (wait := budget.address_blocked(address)) is not None]
        return max(waits) if waits else None


class RequestGuard:
    """Reads the body under a deadline and the size cap, checks its shape, then replays it to the app."""

    def __init__(self, app: ASGIApp, limits: RequestLimits, rate_limits: AddressBlocks | None = None) -> None:
        self.app = app
        self.limits = limits
        self.rate_limits = rate_limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            self._check_head(scope)
            body, pending = await self._read_body(scope, receive)
            if body and _maybe_json(scope, body):
                if len(body) > _THREAD_THRESHOLD:
                    # Off the event loop, and a large body off this process's interpreter lock too.
                    await anyio.to_thread.run_sync(off_the_lock, len(body), check_json, body, self.limits)
                else:
                    check_json(body, self.limits)
        except RelaisError as error:
            await _refuse(error, scope, receive, send)
            return
        await self.app(scope, _replay(body, pending, receive), send)

    def _check_head(self, scope: Scope) -> None:
        if "\x00" in scope.get("path", "") or b"%00" in scope.get("query_string", b"") \
                or b"\x00" in scope.get("query_string", b""):
            raise BadRequest("NUL characters are not allowed in the path or query")
        if self.rate_limits is not None:
            client = scope.get("client")
            wait = self.rate_limits.address_blocked(client[0] if client else "unknown")
            if wait is not None:
                raise TooManyRequests("too many failed authentications from this address", retry_after=wait)

    async def _read_body(self, scope: Scope, receive: Receive) -> tuple[bytes, Message | None]:
        limits = self.limits
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limits.max_drain_bytes:
            # Too big even to drain: answer at once (the server closes the connection after it).
            raise _too_large(limits)
        chunks: list[bytes] = []
        received = 0
        too_large = declared is not None and declared.isdigit() and int(declared) > limits.max_body_bytes
        try:
            with anyio.fail_after(limits.body_timeout_seconds):
                while True:
                    message = await receive()
                    if message["type"] != "http.request":
                        return b"", message
                    chunk = message.get("body", b"")
                    received += len(chunk)
                    if received > limits.max_body_bytes:
                        too_large = True
                        chunks.clear()
                        if received > limits.max_drain_bytes:
                            raise _too_large(limits)
                    elif not too_large:
                        chunks.append(chunk)
                    if not message.get("more_body", False):
                        break
        except TimeoutError as exc:
            raise RequestTimeout(f"the request body was not received within {limits.body_timeout_seconds} s") from exc
        if too_large:
            raise _too_large(limits)
        return b"".join(chunks), None


def _too_large(limits: RequestLimits) -> PayloadTooLarge:
    return PayloadTooLarge(f"request body exceeds {limits.max_body_bytes} bytes")


def _maybe_json(scope: Scope, body: bytes) -> bool:
    content_type = dict(scope.get("headers") or []).get(b"content-type", b"").lower()
    if content_type.startswith(_FORM_TYPES):
        return False
    # json.loads reads a UTF-8 BOM, so must the guard, or a body behind one skips every check.
    return body.lstrip().removeprefix(b"\xef\xbb\xbf").lstrip()[:1] in (b"{", b"[")


async def _refuse(error: RelaisError, scope: Scope, receive: Receive, send: Send) -> None:
    response = FhirResponse(outcome_from_error(error), status_code=error.status_code,
                            headers=getattr(error, "headers", None))
    await response(scope, receive, send)


def _replay(body: bytes, pending: Message | None, receive: Receive) -> Receive:
    """A receive callable that first hands back the buffered body, then defers to the server."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return pending or {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


# --- rate limits --------------------------------------------------------------------------------

class RateLimits:
    """Moving-window budgets: requests per organisation, failed authentications per client address."""

    def __init__(self, per_organisation: str, failed_auth: str) -> None:
        self._storage = MemoryStorage()
        self._limiter = MovingWindowRateLimiter(self._storage)
        self._org = _parse(per_organisation)
        self._auth = _parse(failed_auth)

    def check_organisation(self, organisation_id: str) -> None:
        """Count one request; raise TooManyRequests (429, Retry-After) once the budget is spent."""
        wait = self._take(self._org, "org", organisation_id)
        if wait is not None:
            raise TooManyRequests("request rate limit reached for your organisation; retry later",
                                  retry_after=wait)

    def address_blocked(self, address: str) -> int | None:
        """Seconds to wait if this address spent its failed-authentication budget, else None."""
        for item in self._auth:
            if not self._limiter.test(item, "auth", address):
                return self._retry_after(item, "auth", address)
        return None

    def failed_authentication(self, address: str) -> None:
        for item in self._auth:
            self._limiter.hit(item, "auth", address)

    def _take(self, items: list[RateLimitItem], scope: str, key: str) -> int | None:
        for item in items:
            if not self._limiter.test(item, scope, key):
                return self._retry_after(item, scope, key)
        for item in items:
            if not self._limiter.hit(item, scope, key):
                return self._retry_after(item, scope, key)
        return None

    def _retry_after(self, item: RateLimitItem, scope: str, key: str) -> int:
        reset = self._limiter.get_window_stats(item, scope, key).reset_time
        return max(1, math.ceil(reset - time.time()))

    def reset(self) -> None:
        self._storage.reset()


def _parse(spec: str) -> list[RateLimitItem]:
    return list(parse_many(spec)) if spec and spec.strip() else []
