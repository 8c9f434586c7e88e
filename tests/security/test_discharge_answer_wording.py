"""Issue 19, item 15: a hospital's discharge answer says the same words whether or not the patient has a treating
team, so a hospital that never admitted the patient cannot learn from it that somebody treats them."""

from __future__ import annotations

import pytest

from shared.identifiers import make_nir
from tests import factories as f
from tests.unit.test_discharge_handlers import OTHER_FINESS, TEAM, Harness
from tests.unit.test_discharge_handlers import harness as harness  # the discharge service fixture

pytestmark = pytest.mark.attack


def _words(response) -> list[str]:
    assert response.status_code == 200, response.text
    return [
        issue.get("diagnostics", "")
        for entry in response.json()["entry"]
        if entry["resource"]["resourceType"] == "OperationOutcome"
        for issue in entry["resource"]["issue"]
    ]


def test_the_discharge_answer_is_worded_the_same_with_or_without_a_team(harness: Harness):
    harness.territory()
    treated, untreated = make_nir(1, 50, 2, "75", 114, 501), make_nir(2, 50, 2, "75", 114, 502)
    harness.careteam(team=TEAM, nir=treated)
    # A hospital with no admission of either patient on record discharges both.
    with_team = _words(harness.post_message(f.discharge_message(finess=OTHER_FINESS, nir=treated), OTHER_FINESS))
    bundle = f.discharge_message(finess=OTHER_FINESS, nir=untreated)
    bundle["entry"][1]["resource"]["identifier"][0]["value"] = "NDA-OTHER-STAY"
    without_team = _words(harness.post_message(bundle, OTHER_FINESS))
    assert with_team == without_team
    assert not any("requested from" in words or "no treating team" in words for words in with_team)
