"""Admissions on real Postgres and a real Kafka-protocol broker (Tansu): who hears of an admission."""

from __future__ import annotations

import json
import random
import threading
import uuid
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi.testclient import TestClient
from kafka import KafkaConsumer
from sqlalchemy import text

from services.admissions.bootstrap import bootstrap
from shared.events import (
    RELAIS_EVENT_SYSTEM,
    TOPIC_ADMISSIONS,
    TOPIC_CARETEAM,
    TOPIC_NOTIFY_CPTS,
    TOPIC_NOTIFY_DAC,
    TOPIC_NOTIFY_TEAM,
)
from shared.identifiers import make_finess, make_nir, patient_key
from shared.settings import AdmissionsSettings
from tests import factories as f
from tests.infra.wait import wait_for
from tests.unit.test_admissions_api import BAD_INPUTS

FHIR = "application/fhir+json"
TOPICS = [TOPIC_NOTIFY_TEAM, TOPIC_NOTIFY_CPTS, TOPIC_NOTIFY_DAC, TOPIC_ADMISSIONS, TOPIC_CARETEAM]
_RANDOM = random.SystemRandom()


class Recorder:
    """Reads every topic from the beginning in the background; tests then filter by key."""

    def __init__(self, broker) -> None:
        config = {"bootstrap_servers": broker.bootstrap}
        if broker.api_version:
            config["api_version"] = broker.api_version
        self.consumer = KafkaConsumer(*TOPICS, group_id=None, auto_offset_reset="earliest", **config)
        self.records: dict[tuple[str, str], list[dict]] = defaultdict(list)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for batch in self.consumer.poll(timeout_ms=100).values():
                with self._lock:
                    for record in batch:
                        self.records[(record.topic, record.key.decode())].append(json.loads(record.value))

    def get(self, topic: str, key: str) -> list[dict]:
        with self._lock:
            return list(self.records.get((topic, key), []))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.consumer.close()


@pytest.fixture
def world(postgres_url, tansu, tmp_path):
    settings = AdmissionsSettings(
        database_url=postgres_url,
        kafka_bootstrap_servers=tansu.bootstrap,
        kafka_session_timeout_ms=2000,
        environment="test",
        data_dir=tmp_path,
    )
    service = bootstrap(settings, run_workers=True)
    service.runtime.bus.ensure_topics(TOPICS)
    suffix = uuid.uuid4().hex[:8]
    ids = {
        "team_x": f"msp-x-{suffix}",
        "team_y": f"msp-y-{suffix}",
        "cpts": f"cpts-{suffix}",
        "dac": f"dac-{suffix}",
    }
    directory = service.runtime.directory
    tokens = {
        "hospital": directory.add("hospital", f.DEFAULT_FINESS, "CHU Exemple"),
        "team_x": directory.add("team", ids["team_x"], "MSP X"),
        "team_y": directory.add("team", ids["team_y"], "MSP Y"),
        "dac": directory.add("dac", ids["dac"], "DAC"),
        "admin": directory.add("admin", f"admin-{suffix}", "Admin"),
    }
    recorder = Recorder(tansu)
    with TestClient(service.app) as client:
        world = World(service, client, tokens, ids, recorder)
        world.call(
            "put", "/admissions/territories/75014", "admin", json={"cpts": ids["cpts"], "dac": ids["dac"]}
        )
        yield world
    recorder.close()
    service.runtime.close()


class World:
    def __init__(self, service, client, tokens, ids, recorder) -> None:
        self.service, self.client, self.tokens, self.ids, self.bus = service, client, tokens, ids, recorder

    def call(self, method, path, who, *, content=None, json=None, content_type=FHIR, expect=None):
        headers = {"Authorization": f"Bearer {self.tokens[who]}"}
        if content is not None:
            headers["Content-Type"] = content_type
        response = self.client.request(method, path, content=content, json=json, headers=headers)
        if expect is not None:
            assert response.status_code == expect, response.text
        return response

    def admit(self, bundle, expect=200):
        return self.call(
            "post", "/admissions/fhir/$process-message", "hospital", content=f.body(bundle), expect=expect
        )

    def enrol(self, who, nir, postal_code=None):
        body = json.dumps(f.careteam_resource(nir=nir, postal_code=postal_code))
        return self.call("post", "/admissions/fhir/CareTeam", who, content=body, expect=202)

    def settled(self, patient_key: str, events: int = 1) -> None:
        """Every outbox row is published and the domain events of this patient are on the broker."""
        wait_for(lambda: self.service.runtime.relay.pending() == 0, 15, message="outbox drained")
        wait_for(
            lambda: len(self.bus.get(TOPIC_ADMISSIONS, patient_key)) >= events,
            15,
            message=f"{events} domain event(s) for {patient_key}",
        )

    def notes(self, topic: str, role_key: str) -> list[dict]:
        return self.bus.get(topic, self.ids[role_key])

    def outbox_count(self) -> int:
        with self.service.runtime.engine.connect() as connection:
            return connection.execute(text("select count(*) from outbox")).scalar()


def new_patient() -> str:
    # Random commune and order: the broker may outlive this run, and its topics keep older patients.
    return make_nir(1, 60, 7, "75", _RANDOM.randrange(1, 990), _RANDOM.randrange(1, 999))


def message(nir: str, nda: str | None = None, **kwargs) -> dict:
    bundle = f.admission_message(nir=nir, **kwargs)
    bundle["entry"][1]["resource"]["identifier"][0]["value"] = nda or f"NDA-{uuid.uuid4().hex[:10]}"
    return bundle


def patient_key_of(world, nir: str) -> str:
    return patient_key(f.INS_NIR_TEST, nir, world.service.runtime.settings.secret_key)


def test_an_admission_reaches_only_the_patients_team(world):
    nir = new_patient()
    world.enrol("team_x", nir)
    world.admit(message(nir, conditions=[("E11", "Diabète sucré de type 2")]))
    key = patient_key_of(world, nir)
    wait_for(lambda: world.notes(TOPIC_NOTIFY_TEAM, "team_x"), 15, message="team X notified")
    world.settled(key)
    [note] = world.notes(TOPIC_NOTIFY_TEAM, "team_x")
    assert note["key"] == world.ids["team_x"] and note["data"]["detail"] == "full"
    assert note["data"]["payload"]["resourceType"] == "Bundle"
    assert world.notes(TOPIC_NOTIFY_TEAM, "team_y") == []
    assert world.notes(TOPIC_NOTIFY_CPTS, "cpts") == []
    assert world.notes(TOPIC_NOTIFY_DAC, "dac") == []
    assert world.bus.get(TOPIC_CARETEAM, key)[0]["data"]["change"] == "enrolled"


def test_without_a_team_only_the_cpts_gets_the_minimised_form(world):
    nir = new_patient()
    world.admit(message(nir, conditions=[("F32", "Épisode dépressif")]))
    key = patient_key_of(world, nir)
    wait_for(lambda: world.notes(TOPIC_NOTIFY_CPTS, "cpts"), 15, message="CPTS notified")
    world.settled(key)
    [note] = world.notes(TOPIC_NOTIFY_CPTS, "cpts")
    raw = json.dumps(note, ensure_ascii=False)
    for leak in ("F32", "dépressif", "MARTIN", "Jeanne", nir, "1955-03-14", "DURAND", "mssante"):
        assert leak not in raw
    assert set(note["data"]["payload"]) <= {
        "event",
        "patient_key",
        "commune",
        "age_band",
        "occurred_at",
        "recorded_at",
    }
    assert world.notes(TOPIC_NOTIFY_DAC, "dac") == []


def test_an_open_dac_case_brings_the_dac_in(world):
    nir = new_patient()
    world.enrol("team_x", nir, postal_code="75014")
    world.call(
        "post",
        "/admissions/dac-cases",
        "team_x",
        json={"patient": {"system": f.INS_NIR_TEST, "value": nir}, "dac": world.ids["dac"]},
        expect=201,
    )
    world.admit(message(nir))
    key = patient_key_of(world, nir)
    wait_for(
        lambda: world.notes(TOPIC_NOTIFY_DAC, "dac") and world.notes(TOPIC_NOTIFY_TEAM, "team_x"),
        15,
        message="DAC and team notified",
    )
    world.settled(key)
    assert world.notes(TOPIC_NOTIFY_CPTS, "cpts") == []


def test_opposition_keeps_the_cpts_away(world):
    nir = new_patient()
    world.admit(message(nir))
    key = patient_key_of(world, nir)
    world.settled(key)
    told = len(world.notes(TOPIC_NOTIFY_CPTS, "cpts"))
    consent = json.dumps(f.consent_resource(nir=nir, opposed=True))
    world.call("post", "/admissions/fhir/Consent", "hospital", content=consent, expect=201)
    world.admit(message(nir))
    world.settled(key, events=2)
    assert len(world.notes(TOPIC_NOTIFY_CPTS, "cpts")) == told


def test_five_concurrent_copies_give_one_notification_per_recipient(world):
    nir = new_patient()
    world.enrol("team_x", nir, postal_code="75014")
    world.call(
        "post",
        "/admissions/dac-cases",
        "team_x",
        json={"patient": {"system": f.INS_NIR_TEST, "value": nir}, "dac": world.ids["dac"]},
        expect=201,
    )
    bundle = message(nir)
    with ThreadPoolExecutor(5) as pool:
        responses = list(pool.map(lambda _: world.admit(bundle, expect=None), range(5)))
    assert [r.status_code for r in responses] == [200] * 5, [r.text for r in responses]
    assert len({r.text for r in responses}) == 1
    key = patient_key_of(world, nir)
    world.settled(key)
    assert len(world.notes(TOPIC_NOTIFY_TEAM, "team_x")) == 1
    assert len(world.notes(TOPIC_NOTIFY_DAC, "dac")) == 1
    assert len(world.bus.get(TOPIC_ADMISSIONS, key)) == 1


def test_a_correction_reaches_only_the_original_recipients(world):
    nir = new_patient()
    world.admit(message(nir, nda="NDA-CORR"))
    key = patient_key_of(world, nir)
    world.settled(key)
    world.enrol("team_x", nir)  # the team joins after the admission: it did not get the original
    world.admit(message(nir, nda="NDA-CORR", event=(RELAIS_EVENT_SYSTEM, "revise-admit")))
    world.settled(key, events=2)
    types = [n["type"] for n in world.notes(TOPIC_NOTIFY_CPTS, "cpts")]
    assert types == ["admission.recorded", "admission.corrected"]
    assert world.notes(TOPIC_NOTIFY_TEAM, "team_x") == []


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_refused_and_publishes_nothing(world, case):
    make, content_type, who, status = BAD_INPUTS[case]
    body = make(message(new_patient()))
    if case == "a body over the limit":
        body = b" " * (world.service.runtime.settings.max_body_bytes + 1)
    if case == "another hospital's FINESS":
        other = f.DEFAULT_FINESS[:-2] + "00"
        world.tokens["other"] = world.service.runtime.directory.add(
            "hospital", make_finess(other[:8]), "CH Autre"
        )
        who = "other"
    if case == "a message from a non-hospital token":
        who = "team_x"
    # Setup (territories, enrolments) writes outbox rows of its own: compare with what was there.
    before = world.outbox_count()
    response = world.call(
        "post", "/admissions/fhir/$process-message", who, content=body, content_type=content_type
    )
    assert response.status_code == status, response.text
    assert response.json()["resourceType"] == "OperationOutcome"
    assert world.outbox_count() == before
