"""Fault proof: a steady stream of admissions while a part of Relais is killed or restarted.

admissions and notifications run as processes (`relais serve`) on PostgreSQL and Apache Kafka 0.9 (on disk).
For each fault, N admissions are posted at a steady pace; a post that gets no answer (or a 5xx) is sent again
with the same message id (intake is idempotent). Mid-stream, one of: SIGKILL admissions and restart it,
SIGKILL notifications and restart it, restart the broker, restart PostgreSQL. Then, per organisation, what
was sent (accepted admissions routed to it) is compared with what its feed holds, by the notification's
subject (a team sees the Encounter identifier, the CPTS the admission's opaque reference): nothing lost,
nothing twice. docs/fault-proof.md has the numbers of a run.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import httpx
import pytest

from relais.demo import Commune, FeedItem, Person, Territory, hospital_message, load_territory
from services.admissions import domain as admissions_domain
from shared.idempotence import sender_message_id
from shared.identifiers import INS_NIR_TEST, RPPS, make_nir
from tests.e2e.harness import RelaisProcesses
from tests.infra.wait import wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.kafka, pytest.mark.timeout(240)]

N = 60
PACE_SECONDS = 0.1  # one admission every 100 ms: about 6 s of stream without faults
FAULT_AFTER = 20  # accepted admissions before the fault is injected
DRAIN_SECONDS = 120.0
TEAMS = ("fault-msp-a", "fault-msp-b")
CPTS = "fault-cpts"
POSTAL_CODE, COMMUNE = "88410", Commune("88310", "Monthureux-sur-Saône", "88410")
FHIR = "application/fhir+json"
REPORT: dict[str, dict] = {}


@pytest.fixture(scope="module")
def relais(postgres, apache_kafka, tmp_path_factory):
    processes = RelaisProcesses(
        postgres,
        apache_kafka,
        tmp_path_factory.mktemp("e2e-faults"),
        services=("admissions", "notifications"),
        session_timeout_ms=3000,
    )
    try:
        yield processes.start()
    finally:
        processes.close()
        if REPORT:
            print("\nfault proof:\n" + json.dumps(REPORT, indent=2))


@dataclass
class World:
    relais: RelaisProcesses
    territory: Territory
    tokens: dict[str, str]
    # patient -> the organisation its admissions are routed to (its team, or the CPTS without a team)
    people: list[tuple[Person, str]]


@pytest.fixture(scope="module")
def world(relais):
    territory = load_territory("e2e-faults")
    hospital = territory.org("hospital")
    tokens = {
        "hospital": relais.register("hospital", hospital.id, hospital.name),
        "admin": relais.register("admin", "fault-admin", "Admin"),
        CPTS: relais.register("cpts", CPTS, "CPTS (faults)"),
    }
    for team in TEAMS:
        tokens[team] = relais.register("team", team, team)
    client = httpx.Client(base_url=relais.url("admissions"), timeout=10)
    response = client.put(
        f"/admissions/territories/{POSTAL_CODE}",
        json={"cpts": CPTS, "dac": None},
        headers={"Authorization": f"Bearer {tokens['admin']}"},
    )
    assert response.status_code == 200, response.text
    people = []
    for index in range(6):
        person = Person(
            key=f"p{index}",
            given="Test",
            family=f"PATIENT{index}",
            sex=1 + index % 2,
            birth_date=date(1950 + index, 1 + index, 10),
            commune=COMMUNE,
            team=None,
            conditions=(("I10", "Hypertension essentielle"),),
            nir=make_nir(1 + index % 2, 50 + index, 1 + index, "88", 310, 100 + index),
        )
        # Four patients with a treating team (two MSP), two without (the CPTS gets their admissions).
        owner = TEAMS[index % 2] if index < 4 else CPTS
        if owner != CPTS:
            identifier = {"system": INS_NIR_TEST, "value": person.nir}
            careteam = {
                "resourceType": "CareTeam",
                "status": "active",
                "name": owner,
                "subject": {"identifier": identifier},
                "participant": [
                    {
                        "role": [
                            {
                                "coding": [
                                    {
                                        "system": "https://relais.example.org/fhir/CodeSystem/careteam-role",
                                        "code": "referent",
                                    }
                                ]
                            }
                        ],
                        "member": {"identifier": {"system": RPPS, "value": "10088002026"}, "display": "Dr Référent"},
                    }
                ],
            }
            response = client.post(
                "/admissions/fhir/CareTeam",
                content=json.dumps(careteam),
                headers={"Authorization": f"Bearer {tokens[owner]}", "Content-Type": FHIR},
            )
            assert response.status_code == 202, response.text
        people.append((person, owner))
    client.close()
    return World(relais, territory, tokens, people)


@dataclass
class Stream:
    """Posts N admissions at a steady pace from a thread; retries unanswered posts with the same message."""

    world: World
    tag: str
    accepted: dict[str, str] = field(default_factory=dict)  # expected subject -> organisation
    attempts: int = 0
    unanswered: int = 0  # connection refused/reset, timeouts
    server_errors: int = 0  # 5xx while a dependency was down
    error: BaseException | None = None

    def __post_init__(self) -> None:
        self.thread = threading.Thread(target=self._run, name=f"stream-{self.tag}", daemon=True)
        self.lock = threading.Lock()

    def start(self) -> Stream:
        self.started = time.monotonic()
        self.thread.start()
        return self

    def _key(self, message: dict) -> str:
        """Relais' key of a hospital message: its Bundle.id scoped by the sending hospital."""
        return sender_message_id(self.world.territory.org("hospital").id, message["id"])

    def _post(self, client: httpx.Client, message: dict, deadline: float) -> None:
        body = json.dumps(message, ensure_ascii=False).encode()
        headers = {"Authorization": f"Bearer {self.world.tokens['hospital']}", "Content-Type": FHIR}
        while True:
            self.attempts += 1
            try:
                response = client.post("/admissions/fhir/$process-message", content=body, headers=headers)
            except httpx.TransportError:
                self.unanswered += 1
            else:
                if response.status_code == 200:
                    return
                if response.status_code < 500:
                    raise AssertionError(f"admission refused: {response.status_code} {response.text[:500]}")
                self.server_errors += 1
            if time.monotonic() > deadline:
                raise AssertionError(f"admission {message['id']} not accepted before the deadline")
            time.sleep(0.2)  # client retry pace, not synchronisation

    def _run(self) -> None:
        try:
            client = httpx.Client(base_url=self.world.relais.url("admissions"), timeout=5)
            now = datetime.now(UTC)
            for index in range(N):
                # Steady pace: message i leaves at start + i × pace, unless a retry held the stream back.
                delay = self.started + index * PACE_SECONDS - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                person, owner = self.world.people[index % len(self.world.people)]
                nda = f"NDA-{self.tag}-{index:03d}"
                message = hospital_message(
                    self.world.territory, person, event="ADM", nda=nda, start=now - timedelta(hours=index)
                )
                self._post(client, message, time.monotonic() + 90)
                encounter = message["entry"][1]["resource"]["identifier"][0]
                # A team sees the encounter number; the CPTS only the opaque reference of the admission.
                subject = (
                    f"{encounter['system']}|{encounter['value']}"
                    if owner != CPTS
                    else f"Admission/{admissions_domain.derived_id(self._key(message), 'admission')}"
                )
                with self.lock:
                    self.accepted[subject] = owner
            client.close()
        except BaseException as exc:
            self.error = exc

    def count(self) -> int:
        with self.lock:
            return len(self.accepted)

    def join(self, timeout: float = 150) -> None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"stream {self.tag} did not finish within {timeout} s"
        if self.error:
            raise self.error


def feed(world: World, org: str, after: str | None) -> tuple[list[FeedItem], str]:
    items: list[FeedItem] = []
    while True:
        params = {"limit": 200, **({"after": after} if after else {})}
        response = httpx.get(
            f"{world.relais.url('notifications')}/notifications/feed",
            params=params,
            headers={"Authorization": f"Bearer {world.tokens[org]}"},
            timeout=10,
        )
        response.raise_for_status()
        bundle = response.json()
        page = [FeedItem.parse(entry["resource"]) for entry in bundle.get("entry", [])]
        after = bundle["meta"]["tag"][0]["code"]
        if not page:
            return items, after
        items.extend(page)


def prove(world: World, name: str, inject) -> dict:
    """Stream N admissions, inject the fault once FAULT_AFTER are accepted, then count sent vs arrived."""
    orgs = (*TEAMS, CPTS)
    cursors = {org: feed(world, org, None)[1] for org in orgs}
    tag = f"{name}-{uuid.uuid4().hex[:6]}"
    stream = Stream(world, tag).start()
    wait_for(lambda: stream.count() >= FAULT_AFTER or stream.error, timeout=60, message="the stream to begin")
    fault_started = time.monotonic()
    inject()
    fault_seconds = time.monotonic() - fault_started
    stream.join()
    stream_seconds = time.monotonic() - stream.started

    sent = {org: {s for s, owner in stream.accepted.items() if owner == org} for org in orgs}
    arrived: dict[str, list[FeedItem]] = {org: [] for org in orgs}

    def everything_arrived() -> bool:
        for org in orgs:
            items, cursors[org] = feed(world, org, cursors[org])
            arrived[org].extend(items)
        return all(sent[org] <= {i.subject for i in arrived[org]} for org in orgs)

    drain_started = time.monotonic()
    try:
        wait_for(everything_arrived, timeout=DRAIN_SECONDS, interval=0.2, message=f"{name}: every notification")
    except AssertionError:
        missing = {org: sorted(sent[org] - {i.subject for i in arrived[org]})[:5] for org in orgs}
        raise AssertionError(f"{name}: notifications lost: {missing}\n{world.relais.logs()}") from None
    drained_seconds = time.monotonic() - drain_started
    # A duplicate would come late: read the feeds a few more times (bounded) before counting.
    for _ in range(10):
        everything_arrived()
        time.sleep(0.1)

    result: dict = {
        "posted": N,
        "accepted": len(stream.accepted),
        "attempts": stream.attempts,
        "unanswered_posts_retried": stream.unanswered,
        "5xx_retried": stream.server_errors,
        "fault_seconds": round(fault_seconds, 1),
        "stream_seconds": round(stream_seconds, 1),
        "drain_seconds_after_stream": round(drained_seconds, 1),
        "organisations": {},
    }
    for org in orgs:
        mine = [i for i in arrived[org] if i.subject in stream.accepted]
        subjects = Counter(i.subject for i in mine)
        result["organisations"][org] = {
            "sent": len(sent[org]),
            "arrived": len(mine),
            "distinct_ids": len({i.id for i in mine}),
            "lost": len(sent[org] - set(subjects)),
            "twice": sum(1 for n in subjects.values() if n > 1),
            "foreign": len([i for i in arrived[org] if i not in mine]),
        }
    REPORT[name] = result
    for org, counts in result["organisations"].items():
        assert counts["lost"] == 0, (name, org, counts)
        assert counts["twice"] == 0 and counts["arrived"] == counts["sent"] == counts["distinct_ids"], (
            name,
            org,
            counts,
        )
        assert counts["foreign"] == 0, (name, org, counts)
    assert result["accepted"] == N
    assert sum(c["sent"] for c in result["organisations"].values()) == N
    return result


def test_admissions_killed_mid_stream_loses_and_duplicates_nothing(world):
    def kill_and_restart():
        world.relais.kill("admissions")
        world.relais.start_service("admissions")

    result = prove(world, "kill-9-admissions", kill_and_restart)
    assert result["unanswered_posts_retried"] >= 1, "the kill must have hit the stream"


def test_notifications_killed_mid_stream_loses_and_duplicates_nothing(world):
    def kill_and_restart():
        world.relais.kill("notifications")
        world.relais.start_service("notifications")

    prove(world, "kill-9-notifications", kill_and_restart)


def test_broker_restarted_mid_stream_loses_and_duplicates_nothing(world, apache_kafka):
    def restart_broker():
        apache_kafka.stop()
        apache_kafka.start()

    prove(world, "restart-kafka", restart_broker)


def test_postgres_restarted_mid_stream_loses_and_duplicates_nothing(world, postgres):
    if not postgres.restartable:
        pytest.fail(f"a {postgres.kind} PostgreSQL cannot be restarted by the tests", pytrace=False)
    prove(world, "restart-postgres", postgres.restart)
