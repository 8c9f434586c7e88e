"""The admissions service alone over HTTP, on SQLite or PostgreSQL, with a clock the test moves and every
organisation holding a token; what left is read from the service's outbox (one row per recipient)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from services.admissions.bootstrap import bootstrap
from shared.auth import Directory
from shared.db.tables import AuditEntry, OutboxMessage
from shared.events import TOPIC_CARETEAM, Role
from shared.identifiers import INS_NIR_TEST, make_finess
from shared.service import Service
from shared.settings import AdmissionsSettings
from tests import factories as f

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

    def told(self, topic: str, who: str, event: str | None = None) -> int:
        """Notifications written for `who` on `topic` so far (the outbox holds one row per recipient)."""
        query = select(func.count()).select_from(OutboxMessage).where(
            OutboxMessage.topic == topic, OutboxMessage.key == ORGS[who][1]
        )
        if event is not None:
            query = query.where(OutboxMessage.event_type == event)
        with self.service.runtime.sessions() as session:
            return int(session.execute(query).scalar_one())

    def snapshots(self) -> list[dict]:
        """The care-team snapshots published on relais.careteam so far, oldest first."""
        query = select(OutboxMessage.value).where(OutboxMessage.topic == TOPIC_CARETEAM).order_by(OutboxMessage.seq)
        with self.service.runtime.sessions() as session:
            return [json.loads(value)["data"] for value in session.execute(query).scalars()]

    def audited(self, action: str, outcome: str) -> list[AuditEntry]:
        query = select(AuditEntry).where(AuditEntry.action == action, AuditEntry.outcome == outcome)
        with self.service.runtime.sessions() as session:
            return list(session.execute(query).scalars())


def running_admissions(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Admissions]:
    """The body of a fixture parametrised over "sqlite" and "postgres"."""
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
