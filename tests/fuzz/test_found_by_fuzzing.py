"""What the intake fuzzers found once, kept as plain examples so it never comes back."""

from __future__ import annotations

import json

from sqlalchemy import select

from shared.db.tables import OutboxMessage
from shared.events import TOPIC_NOTIFY_CPTS
from tests import factories as f
from tests.fuzz.test_intake_properties import AUDIT, post


def _resource(bundle: dict, resource_type: str) -> dict:
    return next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == resource_type)


def _cpts_payloads(fuzz) -> list[dict]:
    with fuzz.service.runtime.sessions() as session:
        rows = session.execute(select(OutboxMessage.value).where(OutboxMessage.topic == TOPIC_NOTIFY_CPTS))
        return [json.loads(value)["data"]["payload"] for value in rows.scalars()]


def test_a_wrong_json_type_that_the_model_library_chokes_on_is_a_400(intake):
    fuzz, client, make_message = intake
    bundle = make_message()
    bundle["entry"][0]["resource"]["source"]["endpoint"] = ["https://dpi.example.org"]  # a url, as a list
    before = fuzz.row_counts(skip=AUDIT)
    response = post(fuzz, client, f.body(bundle), "application/fhir+json")
    assert response.status_code == 400, response.text
    assert fuzz.row_counts(skip=AUDIT) == before


def test_an_empty_array_or_object_or_a_null_is_refused_at_intake_not_when_the_notification_is_built(intake):
    fuzz, client, make_message = intake
    for breaking in (
        lambda b: _resource(b, "Encounter").update(participant=[]),
        lambda b: _resource(b, "Encounter").update({"class": {}}),
        lambda b: _resource(b, "Patient").update(address=None),
    ):
        bundle = make_message()
        breaking(bundle)
        before = fuzz.row_counts(skip=AUDIT)
        response = post(fuzz, client, f.body(bundle), "application/fhir+json")
        assert response.status_code == 400, response.text
        assert "empty array, empty object or null" in response.text
        assert fuzz.row_counts(skip=AUDIT) == before


def test_a_city_that_reads_like_free_text_is_left_out_of_minimised_payloads(intake):
    fuzz, client, make_message = intake
    bundle = make_message()
    patient = _resource(bundle, "Patient")
    # Another patient (no team): the CPTS is told, minimised.
    patient["identifier"][0]["value"] = f.make_nir(1, 60, 1, "75", 114, 1)
    patient["address"][0]["city"] = "Paris " + "très long libellé " * 10
    response = post(fuzz, client, f.body(bundle), "application/fhir+json")
    assert response.status_code == 200, response.text
    communes = [payload.get("commune") for payload in _cpts_payloads(fuzz)]
    assert communes and all(commune is None or len(commune) <= 64 for commune in communes)


def test_a_postal_code_too_long_to_be_one_is_ignored_rather_than_failing_the_store(intake):
    fuzz, client, make_message = intake
    bundle = make_message()
    _resource(bundle, "Patient")["address"][0]["postalCode"] = "75014-CEDEX-14-PARIS"
    response = post(fuzz, client, f.body(bundle), "application/fhir+json")
    assert response.status_code == 200, response.text
