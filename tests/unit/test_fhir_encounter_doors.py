"""Both hospital doors (admissions, discharge) give the same answer for the same message shape."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from services.admissions.bootstrap import bootstrap as admissions_bootstrap
from services.discharge.bootstrap import bootstrap as discharge_bootstrap
from shared.auth import Directory
from shared.db.tables import OutboxMessage
from shared.events import TOPIC_NOTIFY_CPTS, Role
from shared.identifiers import FINESS, make_finess
from shared.service import Service
from shared.settings import AdmissionsSettings, DischargeSettings
from tests import factories as f

HOSPITAL = f.DEFAULT_FINESS
ENGINE = make_finess("75000004")
OTHER_HOSPITAL = make_finess("13000001")
LOCAL_IPP = "https://hopital.example.org/ipp"
SECRET = "unit-test-secret-" + "x" * 20
FHIR = {"Content-Type": "application/fhir+json"}


@dataclass
class Doors:
    admissions: TestClient
    discharge: TestClient
    admissions_service: Service
    tokens: dict[str, str]

    def post(self, door: str, bundle: dict, caller: str) -> int:
        client = self.admissions if door == "admissions" else self.discharge
        headers = {**FHIR, "Authorization": f"Bearer {self.tokens[caller]}"}
        return client.post(f"/{door}/fhir/$process-message", content=f.body(bundle), headers=headers).status_code


@pytest.fixture
def doors(tmp_path) -> Iterator[Doors]:
    directory = Directory(f"sqlite:///{tmp_path / 'auth.sqlite'}")
    tokens = {
        HOSPITAL: directory.add(Role.HOSPITAL, HOSPITAL, "CHU Exemple"),
        ENGINE: directory.add(Role.HOSPITAL, ENGINE, "Moteur d'intégration"),
        OTHER_HOSPITAL: directory.add(Role.HOSPITAL, OTHER_HOSPITAL, "CH Autre"),
        "admin": directory.add(Role.ADMIN, "admin", "Admin"),
    }
    (tmp_path / "a").mkdir()
    (tmp_path / "d").mkdir()
    admissions = admissions_bootstrap(
        AdmissionsSettings(environment="test", data_dir=tmp_path / "a", secret_key=SECRET),
        directory=directory,
        run_workers=False,
    )
    after_discharge = datetime.fromisoformat("2024-05-09T11:00:00+02:00") + timedelta(hours=1)
    discharge = discharge_bootstrap(
        DischargeSettings(environment="test", data_dir=tmp_path / "d", secret_key=SECRET),
        directory=directory,
        run_workers=False,
        clock=lambda: after_discharge,
    )
    with TestClient(admissions.app) as a, TestClient(discharge.app) as d:
        yield Doors(a, d, admissions, tokens)
    admissions.runtime.close()
    discharge.runtime.close()
    directory.close()


def _resource(bundle: dict, resource_type: str) -> dict:
    return next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == resource_type)


def direct(bundle: dict) -> dict:
    return bundle


def relayed(bundle: dict) -> dict:
    """An integration engine relays the hospital's message: MessageHeader.sender is the engine."""
    engine = f.hospital(finess=ENGINE, name="Moteur d'intégration")
    bundle["entry"].append({"fullUrl": f"urn:uuid:{engine['id']}", "resource": engine})
    bundle["entry"][0]["resource"]["sender"] = {"reference": f"Organization/{engine['id']}"}
    return bundle


def relayed_by_identifier(bundle: dict) -> dict:
    """The engine names the hospital by a logical reference (FINESS identifier) only."""
    bundle = relayed(bundle)
    _resource(bundle, "Encounter")["serviceProvider"] = {"identifier": {"system": FINESS, "value": HOSPITAL}}
    return bundle


def local_identifier(bundle: dict) -> dict:
    """The hospital knows the patient by its own number only (no INS)."""
    _resource(bundle, "Patient")["identifier"] = [{"system": LOCAL_IPP, "value": "IPP-42"}]
    return bundle


def ins_after_local(bundle: dict) -> dict:
    _resource(bundle, "Patient")["identifier"].insert(0, {"system": LOCAL_IPP, "value": "IPP-42"})
    return bundle


def no_referent(bundle: dict) -> dict:
    bundle["entry"] = [e for e in bundle["entry"] if e["resource"]["resourceType"] != "PractitionerRole"]
    _resource(bundle, "Encounter").pop("participant")
    return bundle


def relayed_local(bundle: dict) -> dict:
    return local_identifier(relayed(bundle))


SHAPES: dict[str, tuple[Callable[[dict], dict], str, int]] = {
    "direct, INS": (direct, HOSPITAL, 200),
    "relayed by an engine, posted by the hospital": (relayed, HOSPITAL, 200),
    "relayed by an engine, posted with the engine's credential": (relayed, ENGINE, 403),
    "relayed, hospital named by identifier only": (relayed_by_identifier, HOSPITAL, 200),
    "local identifier only": (local_identifier, HOSPITAL, 200),
    "relayed, local identifier only": (relayed_local, HOSPITAL, 200),
    "INS listed after a local identifier": (ins_after_local, HOSPITAL, 200),
    "no referent": (no_referent, HOSPITAL, 200),
    "another hospital's message": (direct, OTHER_HOSPITAL, 403),
}


@pytest.mark.parametrize("shape", list(SHAPES))
def test_both_doors_give_the_same_answer_for_one_message_shape(doors, shape):
    change, caller, expected = SHAPES[shape]
    admitted = doors.post("admissions", change(f.admission_message()), caller)
    discharged = doors.post("discharge", change(f.full_discharge_message()), caller)
    assert (admitted, discharged) == (expected, expected)


def _cpts_notifications(service: Service) -> list[dict]:
    with service.runtime.sessions() as session:
        rows = session.execute(select(OutboxMessage).where(OutboxMessage.topic == TOPIC_NOTIFY_CPTS)).scalars()
        return [json.loads(r.value) for r in rows]


def test_a_patient_known_only_locally_is_not_signalled_beyond_the_care_team(doors):
    admin = {"Authorization": f"Bearer {doors.tokens['admin']}"}
    territory = doors.admissions.put("/admissions/territories/75014", json={"cpts": "cpts-1"}, headers=admin)
    assert territory.status_code == 200
    assert doors.post("admissions", f.admission_message(), HOSPITAL) == 200
    assert len(_cpts_notifications(doors.admissions_service)) == 1  # with an INS and no team: the CPTS
    local = local_identifier(f.admission_message())
    _resource(local, "Encounter")["identifier"][0]["value"] = "NDA-LOCAL"
    assert doors.post("admissions", local, HOSPITAL) == 200
    assert len(_cpts_notifications(doors.admissions_service)) == 1  # no consent to look up: nobody beyond
