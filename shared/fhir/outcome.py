"""OperationOutcome construction: every error Relais returns is one of these, built through the R4B model."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from shared.errors import RelaisError
from shared.fhir.models import OperationOutcome, to_json

# pydantic error types -> FHIR IssueType (http://hl7.org/fhir/issue-type)
_PYDANTIC_ISSUE_CODES = {
    "missing": "required",
    "model_field_validation.missing": "required",
    "extra_forbidden": "structure",
    "list_type": "structure",
    "dict_type": "structure",
    "model_type": "structure",
    "model_attributes_type": "structure",
}


def issue(
    severity: str, code: str, diagnostics: str, expression: Sequence[str] | None = None
) -> dict[str, Any]:
    """One OperationOutcome.issue as a plain dict (validated when the outcome is built)."""
    item: dict[str, Any] = {"severity": severity, "code": code, "diagnostics": diagnostics}
    if expression:
        item["expression"] = list(expression)
    return item


def outcome_from_issues(issues: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """A validated OperationOutcome holding the given issues (FHIR requires at least one)."""
    items = list(issues) or [issue("information", "informational", "No issues")]
    return to_json(OperationOutcome.model_validate({"resourceType": "OperationOutcome", "issue": items}))


def operation_outcome(
    severity: str, code: str, diagnostics: str, expression: Sequence[str] | None = None
) -> dict[str, Any]:
    """A single-issue OperationOutcome as JSON-able dict."""
    return outcome_from_issues([issue(severity, code, diagnostics, expression)])


def outcome_from_error(err: RelaisError) -> dict[str, Any]:
    """The OperationOutcome for a RelaisError; detailed issues (e.g. validation) win over the summary."""
    detailed = getattr(err, "issues", None)
    if detailed:
        return outcome_from_issues(detailed)
    return operation_outcome("error", err.issue_code, err.diagnostics, err.expression or None)


def fhirpath_from_loc(loc: Sequence[str | int], root: str) -> str:
    """Turns a pydantic error location into a FHIRPath-like expression: Bundle.entry[0].resource.subject."""
    path = root
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif _is_element_name(part):
            # primitive extensions are stored as `name__ext` and sent as `_name`
            path += "." + (f"_{part[:-5]}" if part.endswith("__ext") else part)
        # anything else is a pydantic internal tag (union member, validator name): not part of the path
    return path


def _is_element_name(part: str) -> bool:
    return bool(part) and part.replace("_", "a").isalnum()


def _diagnostics(error: Mapping[str, Any]) -> str:
    # never echo the input value back: it may be patient data
    if error.get("type") == "extra_forbidden":
        return f"Unknown element '{error['loc'][-1]}'" if error.get("loc") else "Unknown element"
    message = str(error.get("msg", "Invalid value"))
    return message.removeprefix("Value error, ")


def issues_from_errors(errors: Iterable[Mapping[str, Any]], root: str) -> list[dict[str, Any]]:
    """OperationOutcome issues for pydantic error dicts (ValidationError.errors())."""
    return [
        issue(
            "error",
            _PYDANTIC_ISSUE_CODES.get(str(error.get("type")), "value"),
            _diagnostics(error),
            [fhirpath_from_loc(error.get("loc", ()), root)],
        )
        for error in errors
    ]


def outcome_from_validation_error(exc: ValidationError, root: str | None = None) -> list[dict[str, Any]]:
    """OperationOutcome issues for a fhir.resources ValidationError, each with a FHIRPath-ish expression."""
    # the model title is the resource name (Bundle, Encounter...) for fhir.resources models
    return issues_from_errors(exc.errors(include_url=False), root or exc.title or "Resource")
