"""Schemathesis against every service's OpenAPI, in process (ASGI), on SQLite and the embedded log.

Each operation is fuzzed with schema-valid and schema-invalid requests, carrying a token of a role the
operation admits (found by probing each role once), then again without a token. Every answer must be
below 500 and conform to the documented status codes, content types and response schemas.

What the generated OpenAPI does not say, and these tests add to the loaded schema before fuzzing
(documentation gaps, not relaxed behaviour; see docs/performance.md "Fuzzing"):

* the kernel's error contract (docs/architecture.md#public-surface): any operation may answer 400, 401, 403, 404, 405,
  409, 413, 415, 422 or 429 with an ``application/fhir+json`` OperationOutcome. FastAPI only lists its
  own 422 ``HTTPValidationError``, which Relais never sends (the kernel turns validation errors into
  400 OperationOutcomes);
* ``/metrics`` answers Prometheus text, ``/readyz`` may answer 503;
* FHIR endpoints read the raw body (``application/fhir+json``) rather than a pydantic model, so their
  request body is undeclared: we declare a loose FHIR resource (a JSON object) so the fuzzer sends one.

Check left out, and why: ``positive_data_acceptance`` ("schema-valid request rejected"). A FHIR body
that matches the loose schema above is almost never a valid FHIR R4 resource with valid check digits
(INS-NIR key, FINESS and RPPS Luhn), and an id that matches a path pattern names nothing that exists:
rejecting those with 400/404/422 is the right answer, not a failure. The intake itself is fuzzed
with realistic mutations in test_intake_properties.py.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.python.asgi import get_client

from shared.events import Role
from tests.fuzz.apps import SERVICES, FuzzService, build

MAX_EXAMPLES = 12
MAX_EXAMPLES_ANONYMOUS = 4
KERNEL_ERRORS = ("400", "401", "403", "404", "405", "409", "413", "415", "422", "429")
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
# Operations any caller may use without a token: liveness, readiness, metrics, capability, a static page.
PUBLIC = {
    "GET /{service}/healthz",
    "GET /{service}/readyz",
    "GET /{service}/metrics",
    "GET /{service}/metadata",
    "GET /snp/dashboard/page",
}
OPERATION_OUTCOME = {
    "type": "object",
    "required": ["resourceType", "issue"],
    "properties": {
        "resourceType": {"const": "OperationOutcome"},
        "issue": {"type": "array", "minItems": 1},
    },
}
FHIR_BODY = {
    "required": True,
    "content": {
        "application/fhir+json": {
            "schema": {
                "type": "object",
                "required": ["resourceType"],
                "properties": {"resourceType": {"type": "string"}, "id": {"type": "string"}},
            }
        }
    },
}


def documented(spec: dict[str, Any]) -> dict[str, Any]:
    """The app's OpenAPI plus what it leaves out (module docstring)."""
    spec = copy.deepcopy(spec)
    error = {
        "description": "OperationOutcome",
        "content": {"application/fhir+json": {"schema": OPERATION_OUTCOME}},
    }
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            for status in KERNEL_ERRORS:
                responses[status] = copy.deepcopy(error)
            if path.endswith("/metrics"):
                responses["200"]["content"] = {"text/plain": {"schema": {"type": "string"}}}
            if path.endswith("/readyz"):
                responses["503"] = {"description": "not ready", "content": {"application/json": {}}}
            if method in ("post", "put") and "requestBody" not in operation:
                operation["requestBody"] = copy.deepcopy(FHIR_BODY)
    return spec


def operation_key(method: str, path: str) -> str:
    return f"{method.upper()} {path}"


def probe_role(client: Any, fuzz: FuzzService, method: str, path: str) -> Role | None:
    """The first role this operation admits (not 401/403), or None when none does."""
    url = path.replace("{", "").replace("}", "")  # "/x/{id}" -> "/x/id": any id will do to pass auth
    for role in Role:
        response = client.request(method, url, headers=fuzz.auth(role))
        if response.status_code not in (401, 403):
            return role
    return None


@pytest.fixture(scope="module", params=SERVICES)
def fuzz_service(request, tmp_path_factory):
    fuzz = build(request.param, tmp_path_factory.mktemp(f"fuzz-{request.param}"))
    yield fuzz
    fuzz.close()


def _fuzz(operation: Any, mode: GenerationMode, headers: dict[str, str], examples: int) -> str | None:
    """Run one operation in one generation mode; the failure report, or None."""

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,  # the same inputs on every run: a failure here is reproducible
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        case.call_and_validate(headers=headers, checks=CHECKS)

    try:
        run()
    except Unsatisfiable:
        return None  # nothing can be made invalid here (no parameters, no body)
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        return f"{operation.label} [{mode.value}]: {exc}"
    return None


def test_every_operation_answers_within_its_contract_for_a_caller_of_an_admitted_role(fuzz_service):
    spec = documented(fuzz_service.app.openapi())
    schema = schemathesis.openapi.from_dict(spec)
    schema.app = fuzz_service.app
    failures: list[str] = []
    with get_client(fuzz_service.app) as client:
        roles = {
            operation_key(method, path): probe_role(client, fuzz_service, method, path)
            for path, operations in spec["paths"].items()
            for method in operations
        }
    for result in schema.get_all_operations():
        operation = result.ok()
        role = roles[operation_key(operation.method, operation.path)] or Role.HOSPITAL
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            failure = _fuzz(operation, mode, fuzz_service.auth(role), MAX_EXAMPLES)
            if failure:
                failures.append(failure)
    assert not failures, "\n\n".join(failures)


def test_without_a_token_only_public_operations_answer_and_nothing_fails(fuzz_service):
    spec = documented(fuzz_service.app.openapi())
    public = {key.format(service=fuzz_service.name) for key in PUBLIC}
    schema = schemathesis.openapi.from_dict(spec)
    schema.app = fuzz_service.app
    failures: list[str] = []
    with get_client(fuzz_service.app) as client:
        for path, operations in spec["paths"].items():
            for method in operations:
                key = operation_key(method, path)
                status = client.request(method, path.replace("{", "").replace("}", "")).status_code
                if key in public:
                    assert status != 401, f"{key} is public but asked for a token"
                else:
                    assert status == 401, f"{key} answered {status} without a token"
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            failure = _fuzz(operation, mode, {}, MAX_EXAMPLES_ANONYMOUS)
            if failure:
                failures.append(failure)
    assert not failures, "\n\n".join(failures)
