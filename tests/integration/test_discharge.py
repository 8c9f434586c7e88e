"""Discharge service on real PostgreSQL and a real Kafka-protocol broker (Tansu), migrations applied.

The care-team mirror is seeded through `relais.careteam` as admissions would; notifications are read back
from `relais.notify.*` by a test consumer. Deadlines use a fake clock and the timer worker's `run_once()`.
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from contextlib import contextmanager
from datetime import datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from services.discharge.adapters.orm import TimerRow
from services.discharge.bootstrap import bootstrap
from shared.auth import Directory
from shared.bus.envelope import Envelope
from shared.bus.kafka import KafkaBus
from shared.bus.worker import ConsumerLoop
from shared.events import (
    TOPIC_CARETEAM,
    TOPIC_DISCHARGE,
    TOPIC_NOTIFY_CPTS,
    TOPIC_NOTIFY_DAC,
    TOPIC_NOTIFY_TEAM,
    Role,
)
from shared.identifiers import INS_NIR_TEST, make_nir, patient_key
from shared.settings import DischargeSettings
from tests import factories as f
from tests.infra.wait import wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.kafka, pytest.mark.timeout(240)]

FINESS = f.DEFAULT_FINESS
TEAM, CPTS, DAC = "msp-integration", "cpts-integration", "dac-integration"
DISCHARGED_AT = datetime.fromisoformat("2024-05-09T11:00:00+02:00")
GP_ONLY = (("gp-visit", "Consultation du médecin traitant sous 7 jours", 7 * 24.0),)
FHIR = {"Content-Type": "application/fhir+json"}
NOTIFY_TOPICS = [TOPIC_NOTIFY_TEAM, TOPIC_NOTIFY_CPTS, TOPIC_NOTIFY_DAC]


class FakeClock:
    def __init__(self, now: datetime) -> None:
        self.now = now
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self.now

    def set(self, now: datetime) -> None:
        with self._lock:
            self.now = now


class Notifications:
    """A test consumer on the notify topics: what the notifications service would receive."""

    def __init__(self, bus: KafkaBus, mine) -> None:
        self.seen: list[Envelope] = []
        self._mine = mine  # Tansu lives for the whole session: keep to this test's organisations
        self.loop = ConsumerLoop(
            bus, f"test-{uuid.uuid4().hex[:8]}", {t: self.seen.append for t in NOTIFY_TOPICS}
        )

    def poll(self) -> list[Envelope]:
        self.loop.run_once(timeout=0.2)
        return self.seen

    def of(self, event: str, subject: str | None = None) -> list[dict]:
        return [
            e.data
            for e in self.seen
            if e.type == event and self._mine(e.data) and (subject is None or e.data["subject"] == subject)
        ]

    def wait(self, predicate, message: str, timeout: float = 30.0) -> None:
        wait_for(
            lambda: self.poll() is not None and predicate(), timeout=timeout, interval=0, message=message
        )

    def settle(self) -> None:
        """Drain for a short bounded while (10 polls of 0.2 s), so a duplicate would have arrived too."""
        for _ in range(10):
            self.poll()


class World:
    def __init__(self, postgres_url: str, tansu, tmp_path) -> None:
        api = ".".join(map(str, tansu.api_version)) if tansu.api_version else None
        self.settings = DischargeSettings(
            database_url=postgres_url,
            kafka_bootstrap_servers=tansu.bootstrap,
            kafka_api_version=api,
            kafka_session_timeout_ms=2000,
            environment="test",
            data_dir=tmp_path,
        )
        self.bus = KafkaBus(tansu.bootstrap, api_version=tansu.api_version, session_timeout_ms=2000)
        self.bus.ensure_topics([*NOTIFY_TOPICS, TOPIC_CARETEAM, TOPIC_DISCHARGE])
        self.directory = Directory(self.settings.resolved_auth_url)
        suffix = uuid.uuid4().hex[:6]
        # Organisation ids are unique per test: Tansu is shared by the session.
        self.team, self.cpts, self.dac = f"{TEAM}-{suffix}", f"{CPTS}-{suffix}", f"{DAC}-{suffix}"
        self.tokens = {
            FINESS: self.directory.add(Role.HOSPITAL, FINESS, "CHU Exemple"),
            self.team: self.directory.add(Role.TEAM, self.team, "MSP"),
        }
        self.postal_code = f"9{uuid.uuid4().int % 10_000:04d}"
        self.clock = FakeClock(DISCHARGED_AT + timedelta(hours=1))
        self.keys: set[str] = set()
        self.notifications = Notifications(
            self.bus,
            lambda d: d["recipient"] in (self.team, self.cpts, self.dac) or d["patient_key"] in self.keys,
        )

    def auth(self, org: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[org]}"}

    @contextmanager
    def service(self):
        service = bootstrap(self.settings, bus=self.bus, directory=self.directory, clock=self.clock)
        with TestClient(service.app) as client:
            yield service, client
        service.runtime.close()

    def key(self, nir: str) -> str:
        return patient_key(INS_NIR_TEST, nir, self.settings.secret_key)

    def publish(self, *envelopes: Envelope) -> None:
        producer = self.bus.producer()
        for envelope in envelopes:
            producer.send(TOPIC_CARETEAM, envelope.key, envelope.to_json().encode())
        producer.flush()
        producer.close()

    def seed(self, service, nir: str, *, team: bool = True) -> None:
        """Publish the territory and the patient's care team as admissions does, and wait until mirrored."""
        key = self.key(nir)
        self.keys.add(key)
        careteam = {
            "patient_key": key,
            "careteam_id": str(uuid.uuid4()) if team else None,
            "team_org_id": self.team if team else None,
            "status": "active" if team else "inactive",
            "referent": {
                "rpps": "10001234565",
                "name": "Dr Référent",
                "telecom": [{"system": "phone", "value": "0329000000"}],
            },
            "consent_opposed": False,
            "dac_case_open": False,
            "dac_org_id": None,
            "postal_code": self.postal_code,
        }
        territory = {"postal_code": self.postal_code, "cpts_org_id": self.cpts, "dac_org_id": self.dac}
        self.publish(
            Envelope(type="territory.changed", key=self.postal_code, data=territory, source="admissions"),
            Envelope(type="careteam.changed", key=key, data=careteam, source="admissions"),
        )

        def mirrored() -> bool:
            with service.unit_of_work() as uow:
                return (
                    uow.mirror.careteam(key) is not None
                    and uow.mirror.territory(self.postal_code) is not None
                )

        wait_for(mirrored, timeout=30, message="care-team mirror seeded from relais.careteam")

    def discharge(self, client, nir: str, **kwargs) -> dict[str, list[str]]:
        kwargs.setdefault("nda", f"NDA-{nir}")
        bundle = f.full_discharge_message(nir=nir, postal_code=self.postal_code, **kwargs)
        response = client.post(
            "/discharge/fhir/$process-message", content=f.body(bundle), headers={**FHIR, **self.auth(FINESS)}
        )
        assert response.status_code == 200, response.text
        tasks: dict[str, list[str]] = {}
        for entry in response.json()["entry"]:
            resource = entry["resource"]
            if resource["resourceType"] == "Task":
                tasks.setdefault(resource["code"]["coding"][0]["code"], []).append(resource["id"])
        return tasks

    def close(self) -> None:
        self.notifications.loop.close()
        self.directory.close()


@pytest.fixture
def world(postgres_url, tansu, tmp_path):
    w = World(postgres_url, tansu, tmp_path)
    yield w
    w.close()


def nir(n: int) -> str:
    return make_nir(2, 50, 1 + n % 12, "88", 160, 100 + n)


def test_discharge_gives_the_team_the_full_notification_and_the_hospital_sees_it_accepted(world):
    with world.service() as (service, client):
        world.seed(service, nir(1))
        tasks = world.discharge(client, nir(1))
        handoff = tasks["handoff"][0]
        n = world.notifications
        n.wait(
            lambda: n.of("discharge.recorded") and n.of("handoff.proposed", handoff), "discharge notification"
        )
        [recorded] = n.of("discharge.recorded")
        assert (recorded["recipient"], recorded["detail"]) == (world.team, "full")
        assert any(e["resource"].get("id") == handoff for e in recorded["payload"]["entry"])
        accepted = client.post(f"/discharge/fhir/Task/{handoff}/$accept", headers=world.auth(world.team))
        assert accepted.status_code == 200
        read = client.get(f"/discharge/fhir/Task/{handoff}", headers=world.auth(FINESS))
        assert read.json()["status"] == "accepted"
        n.wait(lambda: {d["recipient"] for d in n.of("handoff.accepted")} == {world.team, FINESS}, "accepted")


def test_a_declined_complex_handoff_reaches_the_cpts_minimised_and_the_dac(world):
    with world.service() as (service, client):
        world.seed(service, nir(2))
        handoff = world.discharge(client, nir(2), complexity=("frailty",))["handoff"][0]
        params = {
            "resourceType": "Parameters",
            "parameter": [{"name": "reason", "valueString": "Hors secteur"}],
        }
        declined = client.post(
            f"/discharge/fhir/Task/{handoff}/$decline",
            json=params,
            headers={**FHIR, **world.auth(world.team)},
        )
        assert declined.status_code == 200 and declined.json()["status"] == "rejected"
        n = world.notifications
        n.wait(lambda: len(n.of("handoff.declined")) == 4, "decline notifications")
        by_org = {d["recipient"]: d for d in n.of("handoff.declined")}
        assert by_org[world.cpts]["detail"] == "minimised" and by_org[world.dac]["detail"] == "full"
        assert "Hors secteur" not in str(by_org[world.cpts])


def test_an_unanswered_handoff_expires_exactly_once(world):
    with world.service() as (service, client):
        world.seed(service, nir(3))
        handoff = world.discharge(client, nir(3), plan=GP_ONLY)["handoff"][0]
        world.clock.set(world.clock() + timedelta(hours=48, minutes=1))
        service.timers.run_once()
        service.timers.run_once()
        n = world.notifications
        n.wait(lambda: len(n.of("handoff.expired", handoff)) >= 3, "expiry notifications")
        n.settle()
        assert Counter(d["recipient"] for d in n.of("handoff.expired", handoff)) == Counter(
            {world.team: 1, FINESS: 1, world.cpts: 1}
        )
        assert (
            client.get(f"/discharge/fhir/Task/{handoff}", headers=world.auth(FINESS)).json()["status"]
            == "failed"
        )


def test_follow_up_done_in_time_is_not_escalated(world):
    with world.service() as (service, client):
        world.seed(service, nir(4))
        tasks = world.discharge(client, nir(4), plan=GP_ONLY)
        client.post(f"/discharge/fhir/Task/{tasks['handoff'][0]}/$accept", headers=world.auth(world.team))
        world.clock.set(DISCHARGED_AT + timedelta(days=3))
        done = client.post(
            f"/discharge/fhir/Task/{tasks['gp-visit'][0]}/$complete", headers=world.auth(world.team)
        )
        assert done.status_code == 200 and done.json()["status"] == "completed"
        world.clock.set(DISCHARGED_AT + timedelta(days=40))
        assert service.timers.run_once() == 0
        with service.unit_of_work() as uow:
            assert uow.timers.pending_count() == 0
        n = world.notifications
        n.wait(lambda: n.of("handoff.accepted"), "accepted")
        n.settle()
        assert n.of("followup.missed") == []


def test_a_missed_follow_up_escalates_exactly_once_across_a_restart(world):
    with world.service() as (service, client):
        world.seed(service, nir(5))
        tasks = world.discharge(client, nir(5), plan=GP_ONLY, complexity=("cancer",))
        client.post(f"/discharge/fhir/Task/{tasks['handoff'][0]}/$accept", headers=world.auth(world.team))
        world.clock.set(DISCHARGED_AT + timedelta(days=7, minutes=5))
        service.timers.run_once()
    item = tasks["gp-visit"][0]
    # A new process on the same database: level 0 must not fire again, level 1 fires once after the grace.
    with world.service() as (service, _client):
        assert service.timers.run_once() == 0
        world.clock.set(DISCHARGED_AT + timedelta(days=9, minutes=10))
        service.timers.run_once()
        assert service.timers.run_once() == 0
        n = world.notifications
        n.wait(lambda: len(n.of("followup.missed", item)) >= 4, "escalations")
        n.settle()
        got = Counter((d["recipient"], d["detail"]) for d in n.of("followup.missed", item))
        assert got == Counter({(world.team, "full"): 2, (world.cpts, "minimised"): 1, (world.dac, "full"): 1})


def test_two_replicas_racing_fire_each_deadline_exactly_once(world):
    patients = [nir(10 + i) for i in range(4)]
    with world.service() as (first, client), world.service() as (second, _):
        items = []
        for p in patients:
            world.seed(first, p)
            tasks = world.discharge(client, p, plan=GP_ONLY)
            client.post(f"/discharge/fhir/Task/{tasks['handoff'][0]}/$accept", headers=world.auth(world.team))
            items.append(tasks["gp-visit"][0])
        world.clock.set(DISCHARGED_AT + timedelta(days=30))
        barrier = threading.Barrier(2)
        fired: list[int] = []

        def race(worker) -> None:
            barrier.wait()
            fired.append(worker.run_once())

        threads = [threading.Thread(target=race, args=(s.timers,)) for s in (first, second)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        # Per item: two escalation levels and the reminder before the deadline; the background workers may take some.
        assert len(fired) == 2 and sum(fired) <= 3 * len(items)
        # A level the other replica scheduled during the race is due at once: later passes fire what is left.
        for _ in range(4):
            if first.timers.run_once() == 0:
                break
        with first.unit_of_work() as uow:
            rows = (
                uow.session.execute(select(TimerRow).where(TimerRow.kind == "followup-missed"))
                .scalars()
                .all()
            )
            timers = [(t.fired_at is not None, t.outcome) for t in rows]
        assert timers == [(True, "fired")] * (2 * len(items))
        n = world.notifications
        n.wait(lambda: sum(len(n.of("followup.missed", i)) for i in items) >= 3 * len(items), "escalations")
        n.settle()
        for item in items:
            got = Counter(d["recipient"] for d in n.of("followup.missed", item))
            assert got == Counter({world.team: 2, world.cpts: 1}), item
        ids = [e.id for e in n.seen if e.type == "followup.missed" and e.data["subject"] in items]
        assert len(ids) == len(set(ids))
