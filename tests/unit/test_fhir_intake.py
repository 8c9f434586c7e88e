"""Intake of $process-message bodies: what is accepted, and the exact error for each bad input."""

from __future__ import annotations

import json

import pytest

from shared.errors import BadRequest, PayloadTooLarge, Unprocessable, UnsupportedMediaType
from shared.events import EventType
from shared.fhir.intake import check_content_type, parse_json, parse_message_bundle, resolve_reference
from shared.fhir.outcome import outcome_from_error
from tests.factories import DAVINCI_ADMIT, DAVINCI_DISCHARGE, admission_message, body, discharge_message

FHIR_JSON = "application/fhir+json"


def parse(bundle: dict, content_type: str = FHIR_JSON, **kwargs):
    return parse_message_bundle(body(bundle), content_type, **kwargs)


def test_ans_admission_message_is_accepted_with_its_focus_and_resources():
    message = admission_message(
        message_id="msg-1", encounter_id="enc-1", conditions=[("C50", "Cancer du sein")]
    )
    parsed = parse(message)
    assert parsed.event_type is EventType.ADMISSION_RECORDED
    assert (parsed.event_code, parsed.message_id) == ("ADM", "msg-1")
    assert parsed.event_system.endswith("TRE-R254-TypeEvenement")
    assert [r.id for r in parsed.focus] == ["enc-1"]
    assert parsed.resource("Encounter/enc-1") is parsed.focus[0]
    assert parsed.first("Organization").identifier[0].value == "750712184"
    assert len(parsed.all("Condition")) == 1
    assert parsed.first("PractitionerRole").telecom[1].value.endswith(".mssante.fr")


def test_ans_discharge_message_maps_to_discharge_recorded():
    assert parse(discharge_message()).event_type is EventType.DISCHARGE_RECORDED


@pytest.mark.parametrize(
    ("event", "expected"),
    [(DAVINCI_ADMIT, EventType.ADMISSION_RECORDED), (DAVINCI_DISCHARGE, EventType.DISCHARGE_RECORDED)],
)
def test_davinci_notifications_are_accepted(event, expected):
    assert parse(admission_message(event=event)).event_type is expected


def test_urn_uuid_references_resolve_like_relative_ones():
    parsed = parse(
        admission_message(reference_style="urn", encounter_id="7d1c7f0e-2d0b-4a8e-9d55-0a7e3f1c2b11")
    )
    encounter = parsed.focus[0]
    assert parsed.resource(encounter.subject.reference).get_resource_type() == "Patient"
    assert resolve_reference(
        "https://h.example/fhir/Encounter/" + encounter.id, parsed.resources_by_reference
    )


@pytest.mark.parametrize(
    "content_type", ["application/fhir+json", "application/json; charset=UTF-8", "application/json+fhir"]
)
def test_fhir_and_plain_json_content_types_are_accepted(content_type):
    assert check_content_type(content_type)


@pytest.mark.parametrize(
    "content_type", [None, "", "text/plain", "application/fhir+xml", "application/fhir+json; charset=latin-1"]
)
def test_other_content_types_are_415(content_type):
    with pytest.raises(UnsupportedMediaType) as exc:
        parse(admission_message(), content_type)
    assert exc.value.status_code == 415


def test_oversized_body_is_413_before_anything_else():
    with pytest.raises(PayloadTooLarge) as exc:
        parse_message_bundle(b"x" * 101, "text/plain", max_bytes=100)
    assert exc.value.status_code == 413


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b"[1, 2]", "JSON object"),
        (b'{"a": NaN}', "not valid JSON"),
    ],
)
def test_unparseable_bodies_are_400(raw, fragment):
    with pytest.raises(BadRequest) as exc:
        parse_json(raw)
    assert exc.value.status_code == 400 and fragment in exc.value.diagnostics


def test_wrong_resource_type_is_400_naming_what_was_received():
    with pytest.raises(BadRequest) as exc:
        parse({"resourceType": "Patient", "id": "p"})
    assert "'Patient'" in exc.value.diagnostics


def test_bundle_that_is_not_a_message_is_400():
    message = admission_message()
    message["type"] = "transaction"
    with pytest.raises(BadRequest) as exc:
        parse(message)
    assert exc.value.expression == ["Bundle.type"]


def test_missing_message_header_is_400():
    message = admission_message()
    message["entry"] = message["entry"][1:]
    with pytest.raises(BadRequest) as exc:
        parse(message)
    assert exc.value.expression == ["Bundle.entry[0].resource"]


def test_message_header_not_first_is_400():
    message = admission_message()
    message["entry"][0], message["entry"][1] = message["entry"][1], message["entry"][0]
    with pytest.raises(BadRequest):
        parse(message)


def test_missing_bundle_id_is_400():
    message = admission_message()
    del message["id"]
    with pytest.raises(BadRequest) as exc:
        parse(message)
    assert exc.value.expression == ["Bundle.id"]


def test_unknown_event_code_is_422_listing_accepted_codes():
    with pytest.raises(Unprocessable) as exc:
        parse(admission_message(event_code="XYZ"))
    assert exc.value.status_code == 422
    assert "notification-admit" in exc.value.diagnostics and "|ADM" in exc.value.diagnostics


def test_unknown_resource_type_inside_is_400_with_its_path():
    message = admission_message()
    message["entry"][2]["resource"]["resourceType"] = "Hospitalisation"
    with pytest.raises(BadRequest) as exc:
        parse(message)
    assert exc.value.expression == ["Bundle.entry[2].resource.resourceType"]


def test_bogus_encounter_status_is_400_pointing_at_the_element():
    message = admission_message()
    message["entry"][1]["resource"]["status"] = "bogus"
    with pytest.raises(BadRequest) as exc:
        parse(message)
    assert exc.value.expression == ["Bundle.entry[1].resource.status"]
    outcome = outcome_from_error(exc.value)
    assert outcome["issue"][0]["code"] == "code-invalid"
    assert "finished" in outcome["issue"][0]["diagnostics"]


def test_every_schema_error_becomes_an_issue_without_echoing_values():
    message = admission_message()
    encounter = message["entry"][1]["resource"]
    encounter["period"]["start"] = "yesterday"
    encounter["subject"]["bogus"] = "secret-value"
    with pytest.raises(BadRequest) as exc:
        parse(message)
    issues = exc.value.issues
    paths = {i["expression"][0] for i in issues}
    assert paths == {"Bundle.entry[1].resource.period.start", "Bundle.entry[1].resource.subject.bogus"}
    assert "secret-value" not in json.dumps(outcome_from_error(exc.value))


def test_focus_absent_from_the_bundle_is_422():
    message = admission_message()
    message["entry"][0]["resource"]["focus"] = [{"reference": "Encounter/elsewhere"}]
    with pytest.raises(Unprocessable) as exc:
        parse(message)
    assert exc.value.expression == ["Bundle.entry[0].resource.focus[0]"]


def test_focus_of_the_wrong_type_is_422():
    message = admission_message(patient_id="p1")
    message["entry"][0]["resource"]["focus"] = [{"reference": "Patient/p1"}]
    with pytest.raises(Unprocessable):
        parse(message)
