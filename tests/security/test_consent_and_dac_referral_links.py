"""Issue 19, item 3: a link the caller made itself (its own admission, an enrolment, a change of team, a DAC
referral) never lifts a patient's opposition nor widens a DAC case. Replayed over HTTP on the admissions service,
on SQLite and on PostgreSQL; what left is read from the service's outbox (one row per recipient)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from services.admissions.bootstrap import bootstrap
from services.admissions.commands import ExpireTeamChanges
from shared.auth import Directory
from shared.db.tables import AuditEntry, OutboxMessage
from shared.events import TOPIC_NOTIFY_CPTS, TOPIC_NOTIFY_DAC, Role
from shared.identifiers import INS_NIR_TEST, make_finess, make_nir
from shared.service import Service
from shared.settings import AdmissionsSettings
from tests import factories as f

pytestmark = pytest.mark.attack

FHIR = "application/fhir+json"
ORGS = {
    "h1": (Role.HOSPITAL, make_finess("75000111")),
    "h2": (Role.HOSPITAL, make_finess("75000222")),
    "t1": (Role.TEAM, "msp-consent-one"),
    "t2": (Role.TEAM, "msp-consent-two"),
    "cpts": (Role.CPTS, "cpts-consent"),
    "dac": (Role.DAC, "dac-consent"),
    "admin": (Role.ADMIN, "admin-consent"),
}
STANDS = "opposition to sharing stands"


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Admissions:
    service: Service
    client: TestClient
    tokens: dict[str, str]
    clock: Clock

    def call(self, who: str, method: str, path: str, body: dict | None = None, *, fhir: bool = True):
        headers = {"Authorization": f"Bearer {self.tokens[who]}"}
        if body is not None:
            headers["Content-Type"] = FHIR if fhir else "application/json"
        return self.client.request(method, path, content=json.dumps(body) if body else None, headers=headers)

    def admit(self, who: str, nir: str, **extra) -> None:
        bundle = f.admission_message(finess=ORGS[who][1], nir=nir, postal_code="75014", **extra)
        bundle["entry"][1]["resource"]["identifier"][0]["value"] = f"NDA-{uuid.uuid4().hex[:10]}"
        response = self.call(who, "POST", "/admissions/fhir/$process-message", bundle)
        assert response.status_code == 200, response.text

    def enrol(self, who: str, nir: str) -> str:
        careteam = f.careteam_resource(nir=nir, managing_org=ORGS[who][1], postal_code="75014")
        response = self.call(who, "POST", "/admissions/fhir/CareTeam", careteam)
        assert response.status_code == 202, response.text
        return response.headers["Location"].rsplit("/", 1)[-1]

    def end(self, who: str, careteam_id: str) -> None:
        assert self.call(who, "DELETE", f"/admissions/fhir/CareTeam/{careteam_id}").status_code == 200

    def consent(self, who: str, nir: str, *, opposed: bool):
        return self.call(who, "POST", "/admissions/fhir/Consent", f.consent_resource(nir=nir, opposed=opposed))

    def refer(self, who: str, nir: str):
        referral = {"patient": {"system": INS_NIR_TEST, "value": nir}, "dac": ORGS["dac"][1]}
        return self.call(who, "POST", "/admissions/dac-cases", referral, fhir=False)

    def provision(self, nir: str) -> dict:
        response = self.call("admin", "GET", f"/admissions/consents?patient={INS_NIR_TEST}|{nir}")
        assert response.status_code == 200, response.text
        return response.json()

    def told(self, topic: str, who: str) -> int:
        """Notifications written for `who` on `topic` so far (the outbox holds one row per recipient)."""
        query = select(func.count()).select_from(OutboxMessage).where(
            OutboxMessage.topic == topic, OutboxMessage.key == ORGS[who][1]
        )
        with self.service.runtime.sessions() as session:
            return int(session.execute(query).scalar_one())

    def audited(self, action: str, outcome: str) -> list[AuditEntry]:
        query = select(AuditEntry).where(AuditEntry.action == action, AuditEntry.outcome == outcome)
        with self.service.runtime.sessions() as session:
            return list(session.execute(query).scalars())


@pytest.fixture(params=["sqlite", "postgres"])
def admissions(request, tmp_path) -> Iterator[Admissions]:
    schema = {}
    if request.param == "postgres":
        schema = {"database_url": request.getfixturevalue("postgres_url"), "database_schema": "admissions"}
    settings = AdmissionsSettings(environment="test", data_dir=tmp_path, **schema)
    directory = Directory(f"sqlite:///{tmp_path / 'auth.sqlite'}")
    clock = Clock()
    service = bootstrap(settings, directory=directory, run_workers=False, clock=clock)
    tokens = {who: directory.add(role, org, who.upper()) for who, (role, org) in ORGS.items()}
    try:
        with TestClient(service.app) as client:
            world = Admissions(service, client, tokens, clock)
            territory = {"cpts": ORGS["cpts"][1], "dac": ORGS["dac"][1]}
            assert world.call("admin", "PUT", "/admissions/territories/75014", territory, fhir=False).status_code == 200
            yield world
    finally:
        service.runtime.close()
        directory.close()


_orders = iter(range(200, 999))


def opposed_patient(world: Admissions) -> str:
    """A patient whose treating team recorded an opposition, then ended its enrolment (no team now)."""
    nir = make_nir(1, 72, 6, "75", 114, next(_orders))
    careteam = world.enrol("t1", nir)
    assert world.consent("t1", nir, opposed=True).status_code == 201
    world.end("t1", careteam)
    return nir


def test_a_hospital_that_admits_the_patient_cannot_lift_the_teams_opposition(admissions):
    nir = opposed_patient(admissions)
    admissions.admit("h2", nir)  # the hospital's own link to the patient
    assert admissions.told(TOPIC_NOTIFY_CPTS, "cpts") == 0
    refused = admissions.consent("h2", nir, opposed=False)
    assert refused.status_code == 403, refused.text
    assert STANDS in refused.text and ORGS["t1"][1] not in refused.text
    admissions.admit("h2", nir)
    assert admissions.told(TOPIC_NOTIFY_CPTS, "cpts") == 0
    assert admissions.provision(nir)["provision"] == "deny"
    assert [row.organisation_id for row in admissions.audited("consent.lift", "denied")] == [ORGS["h2"][1]]


def test_a_team_that_enrols_the_patient_cannot_lift_an_earlier_opposition(admissions):
    nir = opposed_patient(admissions)
    careteam = admissions.enrol("t2", nir)  # no team: active at once, and it receives admissions in full
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


def test_a_teams_dac_referral_still_covers_the_patient(admissions):
    nir = make_nir(1, 61, 2, "75", 114, next(_orders))
    admissions.enrol("t1", nir)
    assert admissions.refer("t1", nir).status_code == 201
    admissions.admit("h2", nir)
    assert admissions.told(TOPIC_NOTIFY_DAC, "dac") == 1
