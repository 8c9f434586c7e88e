"""Issue 19, item 11: the discharging hospital does not learn which team the CPTS proposed before that team
accepts (nor which one turned the patient down), as for a handoff's owner; once a team accepts, it is shown."""

from __future__ import annotations

import json

import pytest

from tests import factories as f
from tests.unit.test_discharge_handlers import CPTS, FHIR, FINESS, OTHER_TEAM, TEAM, Harness
from tests.unit.test_discharge_handlers import harness as harness  # the discharge service fixture

pytestmark = pytest.mark.attack
ORIENTATION = "https://relais.example.org/fhir/CodeSystem/task-code|orientation"


def _tasks(h: Harness, org: str, **params: str) -> list[dict]:
    response = h.client.get("/discharge/fhir/Task", params=params, headers=h.auth(org))
    assert response.status_code == 200, response.text
    return [e["resource"] for e in response.json().get("entry", [])]


def _assign(h: Harness, task_id: str, team: str) -> None:
    body = {"resourceType": "Parameters", "parameter": [{"name": "team", "valueString": team}]}
    response = h.client.post(
        f"/discharge/fhir/Task/{task_id}/$assign", content=json.dumps(body), headers={**FHIR, **h.auth(CPTS)}
    )
    assert response.status_code == 200, response.text


def _hospital_view(h: Harness, task_id: str) -> str:
    read = h.client.get(f"/discharge/fhir/Task/{task_id}", headers=h.auth(FINESS))
    assert read.status_code == 200, read.text
    return read.text + json.dumps(_tasks(h, FINESS, code=ORIENTATION))


def _answer(h: Harness, team: str, verb: str) -> None:
    [handoff] = _tasks(h, team, code="handoff", status="requested")
    reason = json.dumps({"resourceType": "Parameters", "parameter": [{"name": "reason", "valueString": "complet"}]})
    answered = h.client.post(
        f"/discharge/fhir/Task/{handoff['id']}/${verb}", content=reason, headers={**FHIR, **h.auth(team)}
    )
    assert answered.status_code == 200, answered.text


def test_the_hospital_does_not_see_the_proposed_team_until_it_accepts(harness):
    harness.territory()
    assert harness.post_message(f.full_discharge_message()).status_code == 200
    [orientation] = _tasks(harness, CPTS, code=ORIENTATION)
    _assign(harness, orientation["id"], TEAM)
    assert TEAM in json.dumps(_tasks(harness, CPTS, code=ORIENTATION))  # the CPTS sees whom it proposed
    assert TEAM not in _hospital_view(harness, orientation["id"])
    _answer(harness, TEAM, "decline")  # returned to the CPTS: the hospital is told, not by whom
    assert TEAM not in _hospital_view(harness, orientation["id"])
    told = [n for n in harness.notifications("orientation.returned") if n["recipient"] == FINESS]
    assert told and TEAM not in json.dumps(told)
    _assign(harness, orientation["id"], OTHER_TEAM)
    assert OTHER_TEAM not in _hospital_view(harness, orientation["id"])
    _answer(harness, OTHER_TEAM, "accept")  # the team has made itself known
    assert OTHER_TEAM in _hospital_view(harness, orientation["id"])
