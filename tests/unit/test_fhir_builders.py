"""Messages Relais builds are valid FHIR and go back through its own intake."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from shared.events import RELAIS_EVENT_SYSTEM, EventType
from shared.fhir import intake
from shared.fhir.builders import message_bundle, message_response
from shared.fhir.intake import parse_message_bundle
from shared.fhir.outcome import operation_outcome
from tests.factories import admission_message, body, encounter, hospital, patient


def _discharge_resources():
    pat = patient(patient_id="p1")
    org = hospital(org_id="o1")
    enc = encounter(
        encounter_id="e1",
        patient_ref="Patient/p1",
        organization_ref="Organization/o1",
        status="finished",
        end="2024-05-09T11:00:00+02:00",
    )
    return pat, org, enc


def test_built_message_reparses_through_intake():
    pat, org, enc = _discharge_resources()
    built = message_bundle(
        EventType.DISCHARGE_RECORDED,
        source_endpoint="https://relais.example.org/fhir",
        focus=[enc],
        sender=org,
        destination="https://msp.example.org/fhir",
        extra_resources=[pat],
        message_id="m-1",
        timestamp="2024-05-09T11:05:00Z",
    )
    parsed = parse_message_bundle(json.dumps(built).encode(), "application/fhir+json")
    assert parsed.event_type is EventType.DISCHARGE_RECORDED
    assert parsed.event_system == RELAIS_EVENT_SYSTEM and parsed.message_id == "m-1"
    assert [r.id for r in parsed.focus] == ["e1"]
    assert parsed.resource(parsed.header.sender.reference).id == "o1"
    assert parsed.header.destination[0].endpoint == "https://msp.example.org/fhir"
    assert built["timestamp"] == "2024-05-09T11:05:00Z"


def test_every_event_builds_with_a_matching_focus():
    task = {"resourceType": "Task", "id": "t1", "status": "requested", "intent": "order"}
    built = message_bundle(
        "handoff.proposed", source_endpoint="https://relais.example.org/fhir", focus=[task]
    )
    assert built["entry"][0]["resource"]["eventCoding"]["code"] == "handoff.proposed"
    assert built["id"] == built["entry"][0]["resource"]["id"]


def test_response_names_the_request_and_carries_the_outcome():
    request = parse_message_bundle(body(admission_message(message_id="req-1")), "application/fhir+json")
    outcome = operation_outcome("error", "processing", "Unknown patient team")
    response = message_response(request.message_id, request.header, "fatal-error", outcome)
    header = response["entry"][0]["resource"]
    assert response["type"] == "message" and header["resourceType"] == "MessageHeader"
    assert header["response"]["identifier"] == request.header.id
    assert header["response"]["code"] == "fatal-error"
    assert header["eventCoding"] == request.raw["entry"][0]["resource"]["eventCoding"]
    assert header["destination"][0]["endpoint"] == request.header.source.endpoint
    details = header["response"]["details"]["reference"]
    assert [e["resource"] for e in response["entry"] if e["fullUrl"] == details] == [outcome]


def test_ok_response_without_outcome_falls_back_to_the_message_id():
    response = message_response("req-2", None, "ok")
    header = response["entry"][0]["resource"]
    assert header["response"] == {"identifier": "req-2", "code": "ok"}
    assert len(response["entry"]) == 1


def test_intake_and_the_builders_do_not_import_each_other():
    # The fullUrl rule lives in shared.fhir.full_urls; the builders import intake, intake never the builders.
    tree = ast.parse(Path(intake.__file__).read_text(encoding="utf-8"))
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert "shared.fhir.builders" not in imported
    assert "shared.fhir.full_urls" in imported


def test_a_bundle_built_around_models_validated_at_intake_is_the_same_bundle():
    received = parse_message_bundle(body(admission_message()), "application/fhir+json")
    pairs = intake.forwardable(received)
    resources, models = [data for _, data in pairs], [model for model, _ in pairs]

    def build(validated_models=()):
        return message_bundle(
            EventType.ADMISSION_RECORDED, source_endpoint="https://relais.example.org/fhir", focus=resources[:1],
            extra_resources=resources[1:], sender=hospital(org_id="o1"),
            message_id="6a1f0c3e-2b4d-4e5f-8a9b-0c1d2e3f4a5b",
            timestamp="2024-05-02T08:00:00Z", validated_models=validated_models,
        )

    assert build(models) == build()


def test_models_that_do_not_match_the_resources_one_to_one_are_refused():
    received = parse_message_bundle(body(admission_message()), "application/fhir+json")
    pairs = intake.forwardable(received)
    with pytest.raises(ValueError, match="one to one"):
        message_bundle(
            EventType.ADMISSION_RECORDED, source_endpoint="https://relais.example.org/fhir", focus=[pairs[0][1]],
            validated_models=[model for model, _ in pairs],
        )


def test_a_bad_code_in_a_resource_not_validated_at_intake_is_still_caught():
    received = parse_message_bundle(body(admission_message()), "application/fhir+json")
    pairs = intake.forwardable(received)
    sender = {**hospital(org_id="o1"), "telecom": [{"system": "pager-of-the-future", "value": "1"}]}
    with pytest.raises(ValueError):
        message_bundle(
            EventType.ADMISSION_RECORDED, source_endpoint="https://relais.example.org/fhir", focus=[pairs[0][1]],
            sender=sender, validated_models=[pairs[0][0]],
        )
