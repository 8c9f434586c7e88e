"""Errors the kernel and services raise; the app factory turns each into a FHIR OperationOutcome."""

from __future__ import annotations


class RelaisError(Exception):
    """An error the caller can act on; carries its HTTP status and FHIR issue code."""

    status_code: int = 400
    issue_code: str = "invalid"
    # HTTP headers the answer must carry (Retry-After on a 429).
    headers: dict[str, str] | None = None

    def __init__(
        self,
        diagnostics: str,
        *,
        expression: list[str] | None = None,
        issue_code: str | None = None,
        status_code: int | None = None,
    ) -> None:
        super().__init__(diagnostics)
        self.diagnostics = diagnostics
        self.expression = expression or []
        if issue_code:
            self.issue_code = issue_code
        if status_code:
            self.status_code = status_code


class BadRequest(RelaisError):
    status_code, issue_code = 400, "invalid"


class Unauthorized(RelaisError):
    status_code, issue_code = 401, "login"


class Forbidden(RelaisError):
    status_code, issue_code = 403, "forbidden"


class NotFound(RelaisError):
    status_code, issue_code = 404, "not-found"


class Conflict(RelaisError):
    status_code, issue_code = 409, "conflict"


class PayloadTooLarge(RelaisError):
    status_code, issue_code = 413, "too-long"


class UnsupportedMediaType(RelaisError):
    status_code, issue_code = 415, "not-supported"


class Unprocessable(RelaisError):
    status_code, issue_code = 422, "processing"


class TooManyRequests(RelaisError):
    status_code, issue_code = 429, "throttled"

    def __init__(self, diagnostics: str, *, retry_after: int = 1) -> None:
        super().__init__(diagnostics)
        self.retry_after = retry_after
        self.headers = {"Retry-After": str(retry_after)}


class TransientError(Exception):
    """A failure worth retrying (database or broker briefly unavailable); never a client error."""
