"""Da Vinci Unsolicited Notifications, Synthea and HL7 v2, as their examples are shaped (tests/conformance_shapes.py),
with French identifiers added: what Relais answers at the discharge door (and see test_conformance_admissions)."""

from __future__ import annotations

from tests import conformance_shapes as shapes
from tests.unit.test_discharge_handlers import FINESS, OTHER_FINESS, TEAM, Harness
from tests.unit.test_discharge_handlers import harness as harness  # the discharge service fixture

DISCHARGE = "notification-discharge"


def discharge(**kwargs) -> dict:
    kwargs.setdefault("start", "2024-05-07T08:00:00+02:00")
    kwargs.setdefault("end", "2024-05-09T11:00:00+02:00")
    return shapes.davinci_message(DISCHARGE, **kwargs)


def handoff_inputs(response: dict) -> dict[str, dict]:
    task = next(
        e["resource"]
        for e in response["entry"]
        if e["resource"]["resourceType"] == "Task" and e["resource"]["code"]["coding"][0]["code"] == "handoff"
    )
    return {i["type"]["text"]: i for i in task.get("input", [])}


def issues(response: dict) -> list[dict]:
    outcome = next(e["resource"] for e in response["entry"] if e["resource"]["resourceType"] == "OperationOutcome")
    return outcome["issue"]


def known_team(harness: Harness) -> None:
    harness.careteam(nir=shapes.TEST_NIR)


def test_a_discharge_whose_attending_is_a_practitioner_with_a_secure_email_gives_the_handoff_contact(harness):
    known_team(harness)
    response = harness.post_message(discharge())
    assert response.status_code == 200, response.text
    inputs = handoff_inputs(response.json())
    assert inputs["hospital-referent-mssante"]["valueContactPoint"]["value"] == "p.martin@ch-vosges.mssante.fr"


def test_a_relayed_discharge_is_read_as_the_hospitals(harness):
    known_team(harness)
    response = harness.post_message(discharge(relayed=True))
    assert response.status_code == 200, response.text
    assert "hospital-referent-mssante" in handoff_inputs(response.json())


def test_a_discharge_naming_no_referent_is_accepted_and_the_hospital_is_the_contact(harness):
    known_team(harness)
    response = harness.post_message(discharge(attending="none"))
    assert response.status_code == 200, response.text
    inputs = handoff_inputs(response.json())
    assert inputs["hospital-referent-missing"]["valueString"] == "no hospital referent was named"
    assert inputs["hospital-contact"]["valueReference"]["identifier"]["value"] == FINESS


def test_a_practitioner_without_any_telecom_is_no_referent_but_no_refusal(harness):
    known_team(harness)
    response = harness.post_message(discharge(attending="practitioner-bare"))
    assert response.status_code == 200, response.text
    assert "hospital-referent-missing" in handoff_inputs(response.json())


def test_a_discharge_dated_years_ago_is_recorded_late_without_an_escalation_burst(harness):
    known_team(harness)
    response = harness.post_message(discharge(start="2018-10-21T21:22:15-07:00", end="2018-10-23T22:22:15-07:00"))
    assert response.status_code == 200, response.text
    body = response.json()
    assert any("shown late" in i["diagnostics"] for i in issues(body))
    followups = [
        e["resource"]
        for e in body["entry"]
        if e["resource"]["resourceType"] == "Task" and e["resource"]["intent"] == "plan"
    ]
    assert followups and all(t["businessStatus"]["text"] == "late-on-arrival" for t in followups)
    before = len(harness.notifications())
    assert harness.fire() == 0  # no escalation timer was due: none was scheduled for past deadlines
    assert len(harness.notifications()) == before


def test_two_hospitals_may_use_the_same_bundle_id(harness):
    known_team(harness)
    first = harness.post_message(discharge(message_id="discharge-notification-message-bundle-01"))
    second = harness.post_message(
        discharge(message_id="discharge-notification-message-bundle-01", finess=OTHER_FINESS, nda="NDA-OTHER"),
        org=OTHER_FINESS,
    )
    assert first.status_code == 200, first.text
    assert second.status_code == 200, second.text


def test_the_forwarded_bundle_keeps_the_senders_event_and_resolvable_references(harness):
    known_team(harness)
    response = harness.post_message(discharge(full_urls_differ=True))
    assert response.status_code == 200, response.text
    [note] = [n for n in harness.notifications("discharge.recorded") if n["recipient"] == TEAM]
    bundle = note["payload"]
    header = bundle["entry"][0]["resource"]
    assert header["eventCoding"]["code"] == DISCHARGE
    assert header["meta"]["tag"][0]["code"]  # Relais' own event code rides along
    full_urls = {e["fullUrl"] for e in bundle["entry"]}

    def references(node):
        if isinstance(node, dict):
            if isinstance(node.get("reference"), str):
                yield node["reference"]
            for value in node.values():
                yield from references(value)
        elif isinstance(node, list):
            for item in node:
                yield from references(item)

    bundled = [r for r in references(bundle) if r.startswith("urn:uuid:")]
    assert bundled and set(bundled) <= full_urls


def test_a_foreign_address_is_not_routed_by_postal_code_and_the_response_says_nobody_was_reached(harness):
    harness.territory("01844")  # a French-looking code that is a US ZIP code in the message
    response = harness.post_message(discharge(country="US", postal_code="01844"))
    assert response.status_code == 200, response.text
    warnings = [i for i in issues(response.json()) if i["severity"] == "warning"]
    assert warnings and "reached nobody" in warnings[0]["diagnostics"]
    assert not harness.notifications("discharge.recorded")


def test_a_french_address_with_the_same_code_is_routed_to_its_cpts(harness):
    harness.territory("01844")  # the control case of the test above: France, so the postal code counts
    response = harness.post_message(discharge(country="FRA", postal_code="01844"))
    assert response.status_code == 200, response.text
    assert harness.notifications("discharge.recorded")


def test_a_synthea_transaction_bundle_is_not_a_message(harness):
    response = harness.post_message(shapes.synthea_transaction())
    assert response.status_code == 400
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert "message" in outcome["issue"][0]["diagnostics"]
