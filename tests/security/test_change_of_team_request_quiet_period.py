"""Issue 19, item 14: a team whose change-of-team request was declined cannot ask again at once, over and over,
each time notifying the current team: one request per patient and team per quiet period (429, Retry-After, an
OperationOutcome that names neither the patient nor the current team)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest

from shared.events import TOPIC_NOTIFY_TEAM, EventType
from shared.identifiers import make_nir
from tests import factories as f
from tests.security.admissions_world import ORGS, Admissions, running_admissions

pytestmark = pytest.mark.attack
REQUESTED = EventType.CARETEAM_CHANGE_REQUESTED.value


@pytest.fixture(params=["sqlite", "postgres"])
def admissions(request, tmp_path) -> Iterator[Admissions]:
    yield from running_admissions(request, tmp_path)


def _decline_all(world: Admissions) -> None:
    waiting = world.call("t1", "GET", "/admissions/team-changes").json()["to_answer"]
    for change in waiting:
        assert world.call("t1", "POST", f"/admissions/team-changes/{change['id']}/$decline").status_code == 200


def test_a_declined_team_asks_again_only_after_the_quiet_period(admissions):
    nir = make_nir(2, 77, 5, "75", 114, 321)
    admissions.enrol("t1", nir)
    admissions.enrol("t2", nir)
    _decline_all(admissions)
    assert admissions.told(TOPIC_NOTIFY_TEAM, "t1", REQUESTED) == 1
    for _ in range(5):  # the attack: ask again at once after each decline
        careteam = admissions.call("t2", "POST", "/admissions/fhir/CareTeam", _careteam(nir))
        assert careteam.status_code == 429, careteam.text
        outcome = careteam.json()
        assert outcome["resourceType"] == "OperationOutcome" and "quiet period" in careteam.text
        assert int(careteam.headers["Retry-After"]) > 0
        assert nir not in careteam.text and ORGS["t1"][1] not in careteam.text
        _decline_all(admissions)
    assert admissions.told(TOPIC_NOTIFY_TEAM, "t1", REQUESTED) == 1
    admissions.clock.now += timedelta(hours=169)
    admissions.enrol("t2", nir)
    assert admissions.told(TOPIC_NOTIFY_TEAM, "t1", REQUESTED) == 2


def test_another_team_is_not_held_back_by_a_decline_it_did_not_get(admissions):
    nir = make_nir(1, 69, 8, "75", 114, 322)
    admissions.enrol("t1", nir)
    admissions.enrol("t2", nir)
    _decline_all(admissions)
    other = make_nir(1, 69, 8, "75", 114, 323)
    admissions.enrol("t1", other)
    admissions.enrol("t2", other)  # the same team, another patient: a request of its own
    assert admissions.told(TOPIC_NOTIFY_TEAM, "t1", REQUESTED) == 2


def _careteam(nir: str) -> dict:
    return f.careteam_resource(nir=nir, managing_org=ORGS["t2"][1], postal_code="75014")
