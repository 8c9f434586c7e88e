"""Issue 19, item 3 (c), at discharge: a DAC case a hospital opened covers that hospital's stay only. The discharge
of that stay reaches the DAC in full; another hospital's discharge of the same patient, or a later stay, does not
(unless the patient meets the complexity criteria, the territory's own rule)."""

from __future__ import annotations

import pytest

from tests import factories as f
from tests.unit.test_discharge_handlers import DAC, FINESS, OTHER_FINESS, Harness
from tests.unit.test_discharge_handlers import harness as harness  # the discharge service fixture

pytestmark = pytest.mark.attack
REFERRED_NDA = "NDA-REFERRED"


def _discharge(h: Harness, finess: str, nda: str) -> set[tuple[str, str, str]]:
    bundle = f.discharge_message(finess=finess)
    bundle["entry"][1]["resource"]["identifier"][0]["value"] = nda
    response = h.post_message(bundle, finess)
    assert response.status_code == 200, response.text
    return {(n["recipient"], n["role"], n["detail"]) for n in h.notifications("discharge.recorded")} & {
        (DAC, "dac", "full"), (DAC, "dac", "minimised")
    }


def test_a_hospitals_referral_brings_the_dac_that_stay_and_no_other(harness):
    harness.territory()
    stay = f"https://hopital.example.org/{FINESS}/nda|{REFERRED_NDA}"
    # What admissions publishes once the hospital referred its stay (no team: no case on the patient).
    referred = [{"hospital": FINESS, "encounter": stay, "dac_org_id": DAC}]
    harness.careteam(team=None, status="inactive", dac_stays=referred)
    assert _discharge(harness, OTHER_FINESS, "NDA-ELSEWHERE") == set()
    assert _discharge(harness, FINESS, "NDA-LATER-STAY") == set()
    assert _discharge(harness, FINESS, REFERRED_NDA) == {(DAC, "dac", "full")}
