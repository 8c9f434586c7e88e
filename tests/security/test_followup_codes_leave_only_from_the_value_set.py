"""Issue 19, item 9: a hospital's own follow-up code (here a name, birth year and diagnosis) never reaches the CPTS
relabelled under Relais' follow-up code system; only codes of Relais' value set (and the published codes it maps)
leave the care team, anything else is the generic `followup`."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import update

from services.discharge.adapters.orm import FollowupRow
from shared.minimise import FOLLOWUP_SYSTEM, SNOMED_CT
from tests import factories as f
from tests.unit.test_discharge_handlers import CPTS, Harness
from tests.unit.test_discharge_handlers import harness as harness  # the discharge service fixture

pytestmark = pytest.mark.attack
ORIENTATION = "https://relais.example.org/fhir/CodeSystem/task-code|orientation"
HOSPITAL_CODE = "DUPONT-Jean-1950-VIH"


def _activity(system: str, code: str, days: int) -> dict:
    """An activity due `days` after the discharge (the order the CPTS sees them in)."""
    due = f"2024-05-{9 + days:02d}T11:00:00+02:00"
    return {
        "detail": {
            "status": "scheduled",
            "code": {"coding": [{"system": system, "code": code}]},
            "scheduledPeriod": {"start": "2024-05-09T11:00:00+02:00", "end": due},
        }
    }


def _discharge_with_plan(h: Harness, *activities: dict) -> list[str]:
    h.territory()
    bundle = f.full_discharge_message(plan=(("gp-visit", "Consultation", 24.0),))
    plan = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "CarePlan")
    plan["activity"] = list(activities)
    assert h.post_message(bundle).status_code == 200
    return _cpts_codes(h)


def _cpts_codes(h: Harness) -> list[str]:
    response = h.client.get("/discharge/fhir/Task", params={"code": ORIENTATION}, headers=h.auth(CPTS))
    [orientation] = [e["resource"] for e in response.json()["entry"]]
    assert HOSPITAL_CODE not in json.dumps(orientation)
    return [
        coding["code"]
        for item in orientation["input"]
        if item["type"].get("text") == "followup"
        for coding in item["type"]["coding"]
    ]


def test_a_hospital_code_reaches_the_cpts_only_as_the_generic_followup(harness):
    codes = _discharge_with_plan(
        harness,
        _activity("urn:oid:1.2.250.1.999.7.1", HOSPITAL_CODE, 1),  # the hospital's own code system
        _activity(FOLLOWUP_SYSTEM, HOSPITAL_CODE, 2),  # even claimed under Relais' system
        _activity(FOLLOWUP_SYSTEM, "gp-visit", 3),  # Relais' value set
        _activity(SNOMED_CT, "30549001", 4),  # a published code the value set maps (removal of suture)
    )
    assert codes == ["followup", "followup", "gp-visit", "nurse-visit"]


def test_a_code_stored_before_the_value_set_is_still_generic_outside_the_care_team(harness):
    _discharge_with_plan(harness, _activity(FOLLOWUP_SYSTEM, "gp-visit", 1))
    with harness.service.runtime.sessions() as session:  # as an earlier version stored the hospital's code
        session.execute(update(FollowupRow).values(code=HOSPITAL_CODE))
        session.commit()
    assert _cpts_codes(harness) == ["followup"]
