"""A large FHIR message is read in a worker process, with the very answer inline reading gives."""

from __future__ import annotations

import os
from typing import Any

import pytest

from shared.errors import RelaisError
from shared.fhir import offload
from shared.fhir.intake import parse_message_bundle, read_message_bundle
from tests import factories as f

FHIR_JSON = "application/fhir+json"


def large_admission(conditions: int = 150) -> dict[str, Any]:
    bundle = f.admission_message()
    kinds = {e["resource"]["resourceType"]: e["resource"] for e in bundle["entry"]}
    patient, encounter = f"Patient/{kinds['Patient']['id']}", f"Encounter/{kinds['Encounter']['id']}"
    for _ in range(conditions):
        resource = f.condition(patient_ref=patient, encounter_ref=encounter)
        bundle["entry"].append({"fullUrl": f"urn:uuid:{resource['id']}", "resource": resource})
    return bundle


def reader_pid(body: bytes) -> int:
    return os.getpid()


@pytest.fixture(scope="module", autouse=True)
def _pool_stopped_after():
    yield
    offload.shutdown()


def test_a_large_body_is_read_in_another_process_and_a_small_one_here():
    large = f.body(large_admission())
    assert len(large) >= offload.OFFLOAD_FROM_BYTES
    assert offload.off_the_lock(len(large), reader_pid, large) != os.getpid()
    assert offload.off_the_lock(100, reader_pid, b"{}") == os.getpid()


def test_a_large_message_read_in_a_worker_is_the_message_read_inline():
    body = f.body(large_admission())
    pooled, inline = parse_message_bundle(body, FHIR_JSON, 10_000_000), read_message_bundle(body)
    assert pooled.message_id == inline.message_id
    assert pooled.event_type == inline.event_type
    assert pooled.raw == inline.raw
    assert pooled.bundle.model_dump() == inline.bundle.model_dump()
    # The focus and the index still point into the Bundle's own entries, as the builders rely on.
    entries = [e.resource for e in pooled.bundle.entry or []]
    assert all(any(r is e for e in entries) for r in pooled.focus)
    assert pooled.json_of(pooled.focus[0]) is not None
    assert pooled.resource(f"Encounter/{pooled.focus[0].id}") is pooled.focus[0]


def _error(body: bytes) -> RelaisError:
    with pytest.raises(RelaisError) as caught:
        parse_message_bundle(body, FHIR_JSON, 10_000_000)
    return caught.value


def _inline_error(body: bytes) -> RelaisError:
    with pytest.raises(RelaisError) as caught:
        read_message_bundle(body)
    return caught.value


@pytest.mark.parametrize("spoil", ["bad-status", "unknown-element", "not-json"])
def test_a_large_invalid_message_gets_the_error_inline_reading_gives(spoil: str):
    bundle = large_admission()
    if spoil == "bad-status":
        bundle["entry"][-1]["resource"]["clinicalStatus"] = "active"
    elif spoil == "unknown-element":
        bundle["entry"][-1]["resource"]["notAnElement"] = True
    body = f.body(bundle) if spoil != "not-json" else f.body(bundle)[:-2]
    pooled, inline = _error(body), _inline_error(body)
    assert type(pooled) is type(inline)
    assert (pooled.status_code, pooled.issue_code) == (inline.status_code, inline.issue_code)
    assert pooled.diagnostics == inline.diagnostics
    assert pooled.expression == inline.expression
    assert getattr(pooled, "issues", None) == getattr(inline, "issues", None)


def test_a_broken_pool_reads_the_body_here_and_is_replaced(monkeypatch):
    class Broken:
        def submit(self, *args: object) -> Any:
            raise offload.BrokenProcessPool("worker died")

        def shutdown(self, **kwargs: object) -> None:
            pass

    broken = Broken()
    monkeypatch.setattr(offload, "_pool", broken)
    large = f.body(large_admission())
    assert offload.off_the_lock(len(large), reader_pid, large) == os.getpid()
    assert offload._pool is not broken
