"""Regressions of the patient-data boundary review (issue 11): wrong patient on correction, identifier bypass."""

# ruff: noqa: F811 - the fixtures of the admissions and discharge handler tests are reused by name

from __future__ import annotations

import json

import pytest

from services.admissions import intake
from shared.errors import Conflict
from shared.events import RELAIS_EVENT_SYSTEM, Role
from shared.identifiers import INS_NIR, INS_NIR_TEST, make_nir
from tests import factories as f
from tests.unit.test_admissions_handlers import (  # noqa: F401 - fixtures
    HOSPITAL,
    admit,
    bus_for,
    clock,
    message,
    notifications,
    sessions,
    territory,
    uow,
)
from tests.unit.test_discharge_handlers import CPTS, harness  # noqa: F401 - fixture

OTHER_NIR = make_nir(1, 71, 11, "88", 160, 5)
LOCAL_IPP = "urn:oid:1.2.250.1.999.1.1"  # a hospital's own patient numbers (IPP)


def _outcome_issues(response: dict) -> list[dict]:
    return [
        issue
        for entry in response["entry"]
        if entry["resource"]["resourceType"] == "OperationOutcome"
        for issue in entry["resource"]["issue"]
    ]


# --- item 1: a correction for A's encounter carrying B ----------------------------------------------------


def test_revise_admit_naming_another_patient_is_refused_and_reaches_nobody(uow, sessions, clock):
    territory(uow, clock)
    admit(uow, clock, message("NDA-A"))  # patient A (the factory's NIR), no team: the CPTS is told (minimised)
    before = notifications(sessions)
    revise = message(
        "NDA-A", nir=OTHER_NIR, event=(RELAIS_EVENT_SYSTEM, "revise-admit"), conditions=[("F20", "Schizophrénie")]
    )
    with pytest.raises(Conflict) as refused:
        admit(uow, clock, revise)
    assert refused.value.status_code == 409
    assert "cancel" in str(refused.value) and OTHER_NIR not in str(refused.value)
    assert notifications(sessions) == before
    assert "F20" not in json.dumps(notifications(sessions))


def test_cancel_admit_naming_another_patient_is_refused(uow, sessions, clock):
    territory(uow, clock)
    admit(uow, clock, message("NDA-C"))
    before = notifications(sessions)
    with pytest.raises(Conflict):
        admit(uow, clock, message("NDA-C", nir=OTHER_NIR, event=(RELAIS_EVENT_SYSTEM, "cancel-admit")))
    assert notifications(sessions) == before


def test_a_correction_under_another_ins_system_of_the_same_person_is_accepted(uow, sessions, clock):
    territory(uow, clock)
    admit(uow, clock, message("NDA-S", nir_system=INS_NIR_TEST))
    response = admit(uow, clock, message("NDA-S", nir_system=INS_NIR, event=(RELAIS_EVENT_SYSTEM, "revise-admit")))
    assert response["entry"][0]["resource"]["response"]["code"] == "ok"


def test_revise_discharge_naming_another_patient_is_refused_over_http(harness):
    harness.careteam()
    assert harness.post_message(f.full_discharge_message(message_id="first")).status_code == 200
    sent = len(harness.notifications())
    revise = f.full_discharge_message(
        message_id="revise", nir=OTHER_NIR, event=(RELAIS_EVENT_SYSTEM, "revise-discharge")
    )
    response = harness.post_message(revise)
    assert response.status_code == 409, response.text
    body = response.json()
    assert body["resourceType"] == "OperationOutcome" and "cancel" in json.dumps(body)
    assert len(harness.notifications()) == sent
    cancel = f.full_discharge_message(
        message_id="cancel", nir=OTHER_NIR, event=(RELAIS_EVENT_SYSTEM, "cancel-discharge")
    )
    assert harness.post_message(cancel).status_code == 409
    assert len(harness.notifications()) == sent


# --- item 4: consent bypass through identifiers -----------------------------------------------------------


def test_an_opposition_under_ins_nir_applies_to_an_admission_under_the_test_oid(uow, sessions, clock):
    territory(uow, clock)
    admit(uow, clock, message("NDA-N", nir_system=INS_NIR))  # an admitting hospital is in the care circle
    told = [t for t, _, _ in notifications(sessions) if t == "relais.notify.cpts"]
    consent = f.consent_resource(nir_system=INS_NIR, opposed=True)
    bus_for(uow, clock).handle(intake.consent_command(consent, HOSPITAL, Role.HOSPITAL))
    admit(uow, clock, message("NDA-O", nir_system=INS_NIR_TEST))
    assert [t for t, _, _ in notifications(sessions) if t == "relais.notify.cpts"] == told


def test_a_patient_known_only_by_a_local_identifier_is_not_shared_and_the_hospital_is_told(uow, sessions, clock):
    territory(uow, clock)
    bundle = message("NDA-L")
    patient = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
    patient["identifier"] = [{"system": LOCAL_IPP, "value": "IPP-000123"}]
    response = admit(uow, clock, bundle)
    assert response["entry"][0]["resource"]["response"]["code"] == "ok"
    assert [t for t, _, _ in notifications(sessions) if t != "relais.notify.team"] == []
    warnings = [i for i in _outcome_issues(response) if i["severity"] == "warning"]
    assert warnings and "local identifier" in warnings[0]["diagnostics"]


def test_a_local_only_discharge_reaches_no_cpts_and_says_why(harness):
    harness.territory()
    bundle = f.full_discharge_message(message_id="local")
    patient = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
    patient["identifier"] = [{"system": LOCAL_IPP, "value": "IPP-000456"}]
    response = harness.post_message(bundle)
    assert response.status_code == 200, response.text
    assert all(n["recipient"] != CPTS for n in harness.notifications())
    assert any(i["severity"] == "warning" for i in _outcome_issues(response.json()))
