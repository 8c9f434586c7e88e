"""Issue 19, item 3: a link the caller made itself (its own admission, an enrolment, a change of team, a DAC
referral) never lifts a patient's opposition nor widens a DAC case. Replayed over HTTP on the admissions service,
on SQLite and on PostgreSQL; what left is read from the service's outbox (one row per recipient)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta

import pytest

from services.admissions.commands import ExpireTeamChanges
from shared.events import TOPIC_NOTIFY_CPTS, TOPIC_NOTIFY_DAC
from shared.identifiers import INS_NIR_TEST, make_nir
from tests import conformance_shapes as shapes
from tests import nde_factories as nde
from tests.security.admissions_world import ORGS, Admissions, running_admissions

pytestmark = pytest.mark.attack

STANDS = "opposition to sharing stands"


@pytest.fixture(params=["sqlite", "postgres"])
def admissions(request, tmp_path) -> Iterator[Admissions]:
    yield from running_admissions(request, tmp_path)

_orders = iter(range(200, 999))


def opposed_patient(world: Admissions) -> str:
    """A patient whose treating team recorded an opposition, then ended its enrolment (no team now)."""
    nir = make_nir(1, 72, 6, "75", 114, next(_orders))
    careteam = world.enrol("t1", nir)
    assert world.consent("t1", nir, opposed=True).status_code == 201
    world.end("t1", careteam)
    return nir


def _link_by_declaration(world: Admissions, nir: str) -> None:
    """The hospital's own link made through the NdE door: an admission declaration (ADM)."""
    declaration = nde.declaration("ADM", finess=ORGS["h2"][1], nir=nir, stay=f"NDA-{nir[-6:]}")
    answer = world.call("h2", "POST", "/admissions/nde/fhir/CommunicationRequest", declaration)
    assert answer.status_code == 201, answer.text


@pytest.mark.parametrize("door", ["message", "nde-declaration"])
def test_a_hospital_that_admits_the_patient_cannot_lift_the_teams_opposition(admissions, door):
    nir = opposed_patient(admissions)
    if door == "message":  # the hospital's own link to the patient
        admissions.admit("h2", nir)
    else:
        _link_by_declaration(admissions, nir)
    assert admissions.told(TOPIC_NOTIFY_CPTS, "cpts") == 0
    # Saying "deny" too does not make it the opposition's owner.
    assert admissions.consent("h2", nir, opposed=True).status_code == 201
    refused = admissions.consent("h2", nir, opposed=False)
    assert refused.status_code == 403, refused.text
    assert STANDS in refused.text and ORGS["t1"][1] not in refused.text
    admissions.admit("h2", nir)
    assert admissions.told(TOPIC_NOTIFY_CPTS, "cpts") == 0
    assert admissions.provision(nir)["provision"] == "deny"
    assert [row.organisation_id for row in admissions.audited("consent.lift", "denied")] == [ORGS["h2"][1]]


def _enrol_by_transaction(world: Admissions, nir: str) -> str:
    """The team's own link made with an ANS Cercle de soins creation transaction."""
    answer = world.call("t2", "POST", "/admissions/fhir", shapes.cds_transaction(nir=nir))
    assert answer.status_code == 200, answer.text
    location = answer.json()["entry"][0]["response"]["location"]
    return location.split("/")[1]


@pytest.mark.parametrize("door", ["careteam", "cercle-transaction"])
def test_a_team_that_enrols_the_patient_cannot_lift_an_earlier_opposition(admissions, door):
    nir = opposed_patient(admissions)
    # No team: active at once, and it receives admissions in full.
    careteam = admissions.enrol("t2", nir) if door == "careteam" else _enrol_by_transaction(admissions, nir)
    admissions.admit("h1", nir)
    assert admissions.consent("t2", nir, opposed=False).status_code == 403
    admissions.end("t2", careteam)
    admissions.admit("h1", nir)
    assert admissions.told(TOPIC_NOTIFY_CPTS, "cpts") == 0
    assert admissions.provision(nir)["provision"] == "deny"


def test_a_team_that_takes_over_by_expiry_cannot_lift_the_opposition(admissions):
    nir = make_nir(2, 80, 3, "75", 114, next(_orders))
    admissions.enrol("t1", nir)
    admissions.admit("h1", nir)
    assert admissions.consent("h1", nir, opposed=True).status_code == 201  # t1 treats the patient at this time
    admissions.enrol("t2", nir)  # a change-of-team request nobody answers
    admissions.clock.now += timedelta(hours=73)
    assert admissions.service.app.state.bus.handle(ExpireTeamChanges()) == 1
    assert admissions.consent("t2", nir, opposed=False).status_code == 403
    assert admissions.provision(nir)["provision"] == "deny"


def test_the_recorder_or_the_team_of_that_time_lifts_the_opposition_audited_and_shown(admissions):
    nir = make_nir(1, 66, 1, "75", 114, next(_orders))
    admissions.enrol("t1", nir)
    admissions.admit("h1", nir)
    assert admissions.consent("h1", nir, opposed=True).status_code == 201
    assert admissions.consent("t1", nir, opposed=False).status_code == 201  # the treating team of that time
    shown = admissions.provision(nir)
    assert shown["provision"] == "permit" and shown["opposition_lifted"]["by"] == "team-at-opposition"
    assert shown["lifted_by"] == ORGS["t1"][1] and shown["opposed_by"] == ORGS["h1"][1]
    lifted = admissions.audited("consent.lift", "lifted")
    assert [(row.organisation_id, row.detail["as"]) for row in lifted] == [(ORGS["t1"][1], "team-at-opposition")]
    # The hospital that recorded the opposition reads who lifted it (a capacity, never an organisation).
    seen = admissions.call("h1", "GET", f"/admissions/consents?patient={INS_NIR_TEST}|{nir}").json()
    assert seen["opposition_lifted"]["by"] == "team-at-opposition" and ORGS["t1"][1] not in json.dumps(seen)
    assert admissions.consent("h1", nir, opposed=True).status_code == 201
    assert admissions.consent("h1", nir, opposed=False).status_code == 201  # its recorder
    assert admissions.provision(nir)["opposition_lifted"]["by"] == "recorder"


def test_a_hospitals_dac_referral_does_not_bring_the_dac_another_hospitals_admission(admissions):
    nir = make_nir(2, 58, 9, "75", 114, next(_orders))
    admissions.admit("h1", nir)
    assert admissions.refer("h1", nir).status_code == 201
    admissions.admit("h2", nir, conditions=[("C50.9", "Tumeur maligne du sein")])
    assert admissions.told(TOPIC_NOTIFY_DAC, "dac") == 0
    admissions.admit("h1", nir)  # the referring hospital's next stay is not the stay it referred either
    assert admissions.told(TOPIC_NOTIFY_DAC, "dac") == 0
    # The registry tells the other services of a case on one stay, never of a case on the patient.
    snapshot = admissions.snapshots()[-1]
    assert snapshot["dac_case_open"] is False
    assert [(s["hospital"], s["dac_org_id"]) for s in snapshot["dac_stays"]] == [(ORGS["h1"][1], ORGS["dac"][1])]


def test_a_teams_dac_referral_still_covers_the_patient(admissions):
    nir = make_nir(1, 61, 2, "75", 114, next(_orders))
    admissions.enrol("t1", nir)
    assert admissions.refer("t1", nir).status_code == 201
    admissions.admit("h2", nir)
    assert admissions.told(TOPIC_NOTIFY_DAC, "dac") == 1
