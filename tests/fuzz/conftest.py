"""Fixtures of the fuzzers: the intake services with a patient who has a treating team and a territory."""

from __future__ import annotations

import uuid

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from services.discharge.entrypoints.consumers import careteam_handlers
from shared.bus.envelope import Envelope
from shared.db.tables import OutboxMessage
from shared.events import TOPIC_CARETEAM, Role
from tests import factories as f
from tests.fuzz.apps import ORGANISATIONS, FuzzService, build


def _admission() -> dict:
    bundle = f.admission_message(conditions=[("E11", "Diabète sucré de type 2")])
    bundle["entry"][1]["resource"]["identifier"][0]["value"] = f"NDA-{uuid.uuid4().hex[:12]}"
    return bundle


def _discharge() -> dict:
    return f.full_discharge_message(nda=f"NDA-{uuid.uuid4().hex[:12]}", complexity=("diabetes",))


INTAKES = {"admissions": _admission, "discharge": _discharge}


def _enrol_patient_with_a_team(admissions: FuzzService, client: TestClient) -> list[Envelope]:
    """The factories' patient gets a treating team and a territory: the full-bundle and CPTS routes."""
    fhir = {"Content-Type": "application/fhir+json"}
    response = client.put(
        "/admissions/territories/75014",
        json={"cpts": ORGANISATIONS[Role.CPTS], "dac": ORGANISATIONS[Role.DAC]},
        headers=admissions.auth(Role.ADMIN),
    )
    assert response.status_code == 200, response.text
    response = client.post(
        "/admissions/fhir/CareTeam",
        content=f.body(f.careteam_resource()),
        headers={**admissions.auth(Role.TEAM), **fhir},
    )
    assert response.status_code == 202, response.text
    with admissions.service.runtime.sessions() as session:
        rows = session.execute(
            select(OutboxMessage).where(OutboxMessage.topic == TOPIC_CARETEAM).order_by(OutboxMessage.seq)
        ).scalars()
        return [Envelope.from_bytes(row.value) for row in rows]


@pytest.fixture(scope="module", params=sorted(INTAKES))
def intake(request, tmp_path_factory):
    admissions = build("admissions", tmp_path_factory.mktemp("intake-admissions"))
    admissions_client = TestClient(admissions.app)
    mirror = _enrol_patient_with_a_team(admissions, admissions_client)
    if request.param == "admissions":
        fuzz, client = admissions, admissions_client
    else:
        fuzz = build(request.param, tmp_path_factory.mktemp(f"intake-{request.param}"))
        client = TestClient(fuzz.app)
        # What the discharge consumer would mirror from relais.careteam, handed over directly.
        handlers = careteam_handlers(fuzz.service.bus)
        for envelope in mirror:
            handlers[TOPIC_CARETEAM](envelope)
    yield fuzz, client, INTAKES[request.param]
    for each in {id(fuzz): (fuzz, client), id(admissions): (admissions, admissions_client)}.values():
        each[1].close()
        each[0].close()
