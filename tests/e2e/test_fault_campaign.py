"""Randomized fault campaign: two replicas of every service on a three-node Kafka 4 cluster, under a seeded nemesis.

Setup: the four services run twice each (replicas a and b, one database, six-partition topics with
replication 3 and min.insync.replicas 2), every service reaching PostgreSQL through a loopback proxy the
test controls. A stream of admissions and discharges for several patients of several organisations
(three MSP teams; patients without a team belong to the CPTS) is posted at a steady rate, each post
going to a live replica (a post that gets no answer or a 5xx is sent again with the same message id).

Nemesis (seeded, one fault at a time, at random points of the stream): SIGKILL of a replica of each service (it
comes back: the consumer groups rebalance on leave and join), SIGKILL of the leader of a partition,
PostgreSQL restart, a cut of the service-to-database network path.

Checker, per organisation: every admission routed to it arrived exactly once (by subject); every
discharge arrived once at some organisation and never twice anywhere; per patient, the admissions and
discharges arrive in the order they were posted. Work is shared: both replicas of notifications hold
partitions of the role topics.

The short run belongs to the test suite; `make fault-campaign` runs the long one (RELAIS_CAMPAIGN_*
variables: MESSAGES, RATE, FAULTS, SEED) and writes its figures to .cache/fault-campaign-<seed>.json.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import httpx
import pytest
from sqlalchemy.engine import make_url

from relais.demo import Commune, FeedItem, Person, hospital_message, load_territory
from shared.identifiers import INS_NIR_TEST, RPPS, make_nir
from tests.e2e.harness import SERVICES, RelaisProcesses, ServiceProcess
from tests.infra.brokers import REPO_ROOT, free_port
from tests.infra.proxy import TcpProxy
from tests.infra.wait import wait_for

# The short run (part of the suite) is about two minutes; `make fault-campaign` sets the long one.
MESSAGES = int(os.environ.get("RELAIS_CAMPAIGN_MESSAGES", "160"))
RATE = float(os.environ.get("RELAIS_CAMPAIGN_RATE", "10"))
FAULTS = int(os.environ.get("RELAIS_CAMPAIGN_FAULTS", "4"))
SEED = int(os.environ.get("RELAIS_CAMPAIGN_SEED") or random.SystemRandom().randrange(1, 1_000_000))
POSTERS = 4
TEAMS = ("camp-msp-a", "camp-msp-b", "camp-msp-c")
CPTS = "camp-cpts"
PATIENTS = 16
POSTAL_CODE, COMMUNE = "88410", Commune("88310", "Monthureux-sur-Saône", "88410")
FHIR = "application/fhir+json"

pytestmark = [pytest.mark.postgres, pytest.mark.kafka,
              pytest.mark.timeout(int(os.environ.get("RELAIS_CAMPAIGN_TIMEOUT", "600")))]


@dataclass
class Cluster:
    """Replicas a and b of every service, on one database reached through ``proxy``."""

    relais: RelaisProcesses
    replicas: dict[str, list[ServiceProcess]]
    proxy: TcpProxy
    tokens: dict[str, str] = field(default_factory=dict)

    def live(self, service: str) -> list[ServiceProcess]:
        return [replica for replica in self.replicas[service] if replica.alive]


@pytest.fixture(scope="module")
def cluster(postgres, kafka_cluster, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("e2e-campaign")
    relais = RelaisProcesses(postgres, kafka_cluster, workdir / "a", session_timeout_ms=3000)
    proxy = TcpProxy(make_url(relais.database_url).port or 5432)
    through_proxy = make_url(relais.database_url).set(port=proxy.port).render_as_string(hide_password=False)
    relais.env.update({f"RELAIS_{name.upper()}_DATABASE_URL": through_proxy for name in SERVICES})
    relais.env["RELAIS_AUTH_DATABASE_URL"] = through_proxy
    (workdir / "b").mkdir()
    replicas = {name: [relais.services[name], ServiceProcess(name, free_port(), relais.env, workdir / "b")]
                for name in SERVICES}
    try:
        relais.start()
        for name in SERVICES:
            replicas[name][1].spawn()
        for name in SERVICES:
            replicas[name][1].wait_ready(120)
        yield Cluster(relais, replicas, proxy)
    finally:
        for name in SERVICES:
            replicas[name][1].terminate()
        relais.close()
        proxy.close()


def make_people() -> list[tuple[Person, str]]:
    people = []
    for index in range(PATIENTS):
        person = Person(key=f"c{index}", given="Test", family=f"CAMPAGNE{index}", sex=1 + index % 2,
                        birth_date=date(1940 + index, 1 + index % 12, 10), commune=COMMUNE, team=None,
                        conditions=(("I10", "Hypertension essentielle"),),
                        nir=make_nir(1 + index % 2, 40 + index, 1 + index % 12, "88", 310, 200 + index))
        # Three patients in four have a treating team; the others belong to the CPTS.
        people.append((person, TEAMS[index % 3] if index % 4 else CPTS))
    return people


def register_world(cluster: Cluster, territory, people) -> None:
    hospital = territory.org("hospital")
    relais = cluster.relais
    tokens = {"hospital": relais.register("hospital", hospital.id, hospital.name),
              "admin": relais.register("admin", "camp-admin", "Admin"), CPTS: relais.register("cpts", CPTS, "CPTS")}
    for team in TEAMS:
        tokens[team] = relais.register("team", team, team)
    cluster.tokens = tokens
    client = httpx.Client(base_url=relais.url("admissions"), timeout=15)
    response = client.put(f"/admissions/territories/{POSTAL_CODE}", json={"cpts": CPTS, "dac": None},
                          headers={"Authorization": f"Bearer {tokens['admin']}"})
    assert response.status_code == 200, response.text
    role = {"coding": [{"system": "https://relais.example.org/fhir/CodeSystem/careteam-role", "code": "referent"}]}
    for person, owner in people:
        if owner == CPTS:
            continue
        careteam = {"resourceType": "CareTeam", "status": "active", "name": owner,
                    "subject": {"identifier": {"system": INS_NIR_TEST, "value": person.nir}},
                    "participant": [{"role": [role], "member": {"identifier": {"system": RPPS, "value": "10088002026"},
                                                               "display": "Dr Référent"}}]}
        response = client.post("/admissions/fhir/CareTeam", content=json.dumps(careteam),
                               headers={"Authorization": f"Bearer {tokens[owner]}", "Content-Type": FHIR})
        assert response.status_code == 202, response.text
    client.close()


@dataclass
class Posted:
    patient: str
    owner: str
    event: str  # ADM or SOR
    subject: str
    order: int  # position in this patient's sequence


class Stream:
    """POSTERS threads post MESSAGES messages at RATE per second in all; a patient always has the same thread."""

    def __init__(self, cluster: Cluster, territory, people, tag: str) -> None:
        self.cluster, self.territory, self.people, self.tag = cluster, territory, people, tag
        self.posted: list[Posted] = []
        self.lock = threading.Lock()
        self.retried = Counter()
        self.errors: list[BaseException] = []
        self.now = datetime.now(UTC)
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(POSTERS)]

    def plan(self, poster: int) -> list[tuple[int, int, str]]:
        """(global index, patient index, event) for this poster: ADM then SOR of the same stay, per patient."""
        plan = []
        for index in range(poster, MESSAGES, POSTERS):
            patient = (index // POSTERS) % (PATIENTS // POSTERS) * POSTERS + poster
            plan.append((index, patient, "ADM" if (index // PATIENTS) % 2 == 0 else "SOR"))
        return plan

    def start(self) -> Stream:
        self.started = time.monotonic()
        for thread in self.threads:
            thread.start()
        return self

    def _post(self, service: str, message: dict, deadline: float) -> None:
        body = json.dumps(message, ensure_ascii=False).encode()
        headers = {"Authorization": f"Bearer {self.cluster.tokens['hospital']}", "Content-Type": FHIR}
        attempt = 0
        while True:
            replicas = self.cluster.replicas[service]
            replica = replicas[attempt % len(replicas)]
            attempt += 1
            try:
                response = httpx.post(f"{replica.url}/{service}/fhir/$process-message", content=body,
                                      headers=headers, timeout=10)
            except httpx.TransportError:
                self.retried["unanswered"] += 1
            else:
                if response.status_code == 200:
                    return
                if response.status_code < 500:
                    raise AssertionError(f"{service} refused a message: {response.status_code} {response.text[:300]}")
                self.retried["5xx"] += 1
            if time.monotonic() > deadline:
                raise AssertionError(f"{service}: message {message['id']} not accepted before the deadline")
            time.sleep(0.1)  # client retry pace, not synchronisation

    def _run(self, poster: int) -> None:
        sequence: Counter = Counter()
        try:
            for index, patient, event in self.plan(poster):
                delay = self.started + index / RATE - time.monotonic()
                if delay > 0:
                    time.sleep(delay)  # steady pace of the stream, not synchronisation
                person, owner = self.people[patient]
                stay = index // (2 * PATIENTS)
                nda = f"NDA-{self.tag}-{person.key}-{stay:03d}"
                start = self.now - timedelta(days=30) + timedelta(hours=stay)
                message = hospital_message(self.territory, person, event=event, nda=nda, start=start,
                                           end=start + timedelta(minutes=30) if event == "SOR" else None)
                self._post("admissions" if event == "ADM" else "discharge", message, time.monotonic() + 180)
                encounter = message["entry"][1]["resource"]["identifier"][0]
                sequence[patient] += 1
                with self.lock:
                    self.posted.append(Posted(person.key, owner, event, f"{encounter['system']}|{encounter['value']}",
                                              sequence[patient]))
        except BaseException as exc:
            self.errors.append(exc)

    def count(self) -> int:
        with self.lock:
            return len(self.posted)

    @property
    def running(self) -> bool:
        return any(thread.is_alive() for thread in self.threads)

    def join(self, timeout: float) -> None:
        for thread in self.threads:
            thread.join(max(1.0, timeout))
        assert not self.running, "the stream did not finish"
        if self.errors:
            raise self.errors[0]


class Nemesis:
    """One fault at a time at random moments, from a seeded generator; every kind at least once when there are
    enough faults, else a broker kill (the fault that hits the consumer groups hardest) and distinct others."""

    def __init__(self, cluster: Cluster, kafka, postgres, rng: random.Random) -> None:
        self.cluster, self.kafka, self.postgres, self.rng = cluster, kafka, postgres, rng
        self.log: list[dict] = []
        kinds = [f"kill-9:{service}" for service in SERVICES] + ["kafka-leader-kill", "postgres-restart", "db-cut"]
        if len(kinds) > FAULTS:
            others = [kind for kind in kinds if kind != "kafka-leader-kill"]
            chosen = ["kafka-leader-kill", *self.rng.sample(others, max(FAULTS - 1, 0))]
            self.sequence = self.rng.sample(chosen, len(chosen))
        else:
            self.sequence = self.rng.sample(kinds, len(kinds))
        while len(self.sequence) < FAULTS:
            self.sequence.append(self.rng.choice(kinds))

    def inject(self, kind: str) -> dict:
        started = time.monotonic()
        entry: dict = {"fault": kind, "at_seconds": None}
        if kind.startswith("kill-9:"):
            service = kind.split(":", 1)[1]
            index = self.rng.randrange(2)
            replica = self.cluster.replicas[service][index]
            entry["target"] = f"{service}-{'ab'[index]}"
            replica.kill()
            replica.spawn()
            replica.wait_ready(180)
        elif kind == "kafka-leader-kill":
            topic = self.rng.choice(["relais.notify.team", "relais.notify.cpts", "relais.careteam",
                                     "relais.admissions", "coordinator"])
            if topic == "coordinator":  # the node coordinating the notifications consumer group
                group = f"{self.cluster.relais.env['RELAIS_CONSUMER_GROUP_PREFIX']}.notifications"
                victim = self.kafka.coordinator_index(group)
                entry["target"] = f"node {self.kafka.nodes[victim].node_id} (coordinator of {group})"
            else:
                partition = self.rng.randrange(6)
                victim = self.kafka.leader_index(topic, partition)
                entry["target"] = f"node {self.kafka.nodes[victim].node_id} (leader of {topic}/{partition})"
            self.kafka.kill_node(victim)
            down = self.rng.uniform(2.0, 6.0)
            time.sleep(down)  # the node stays dead for a random while: part of the fault, not synchronisation
            entry["down_seconds"] = round(down, 1)
            self.kafka.start_node(victim, timeout=180)
        elif kind == "postgres-restart":
            mode = self.rng.choice(["fast", "immediate"])
            entry["target"] = f"postgres ({mode})"
            self.postgres.restart(mode=mode)
        elif kind == "db-cut":
            hold = self.rng.uniform(1.0, 4.0)
            entry["target"] = f"service-to-database path for {hold:.1f} s"
            self.cluster.proxy.cut()
            time.sleep(hold)  # the cut lasts a random while: part of the fault, not synchronisation
            self.cluster.proxy.restore()
        entry["recovered_seconds"] = round(time.monotonic() - started, 1)
        return entry

    def run(self, stream: Stream, began: float) -> None:
        # Random moments of the stream itself: each fault waits for a random number of accepted messages (in the
        # first 90 %), whatever pace faults leave the stream (a pause by the clock bunched them at its start).
        marks = sorted(self.rng.randrange(max(1, MESSAGES * 9 // 10)) for _ in self.sequence)
        for kind, mark in zip(self.sequence, marks, strict=True):
            wait_for(lambda mark=mark: stream.count() >= mark or not stream.running,
                     timeout=MESSAGES / RATE + 900, interval=0.05, message=f"the stream to reach message {mark}")
            entry = {"at_seconds": round(time.monotonic() - began, 1), "posted_before": stream.count()}
            entry.update({k: v for k, v in self.inject(kind).items() if k != "at_seconds"})
            self.log.append(entry)


def read_feed(cluster: Cluster, org: str, after: str | None) -> tuple[list[FeedItem], str | None]:
    items: list[FeedItem] = []
    url = f"{cluster.relais.url('notifications')}/notifications/feed"
    while True:
        params = {"limit": 200, **({"after": after} if after else {})}
        response = httpx.get(url, params=params, headers={"Authorization": f"Bearer {cluster.tokens[org]}"}, timeout=15)
        response.raise_for_status()
        bundle = response.json()
        page = [FeedItem.parse(entry["resource"]) for entry in bundle.get("entry", [])]
        after = bundle["meta"]["tag"][0]["code"]
        if not page:
            return items, after
        items.extend(page)


def shared_work(cluster: Cluster, kafka) -> dict[str, int]:
    """Members of the notifications consumer group and how many partitions each holds."""
    group = f"{cluster.relais.env['RELAIS_CONSUMER_GROUP_PREFIX']}.notifications"
    admin = kafka.admin()
    try:
        description = admin.describe_groups([group])[group]
    finally:
        admin.close()
    return {member["member_id"]: sum(len(entry["partitions"])
                                     for entry in member["member_assignment"]["assigned_partitions"])
            for member in description["members"]}


def dead_letters(cluster: Cluster, kafka) -> dict[str, int]:
    """This run's dead letters, counted by topic, consumer and error class: a fault must never make a message
    look poisonous (a dead letter is a message no one is notified of)."""
    from kafka import KafkaConsumer

    from shared import events
    from shared.bus.base import dlq_topic

    prefix = cluster.relais.env["RELAIS_CONSUMER_GROUP_PREFIX"]
    consumed = (events.TOPIC_ADMISSIONS, events.TOPIC_DISCHARGE, events.TOPIC_SNP, events.TOPIC_CARETEAM,
                events.TOPIC_REGISTRY_UPDATES, events.TOPIC_NOTIFY_TEAM, events.TOPIC_NOTIFY_CPTS,
                events.TOPIC_NOTIFY_DAC)
    topics = [dlq_topic(topic) for topic in consumed]
    consumer = KafkaConsumer(*topics, group_id=None, auto_offset_reset="earliest", consumer_timeout_ms=3000,
                             **kafka.client_config())
    found: Counter = Counter()
    try:
        for record in consumer:
            letter = json.loads(record.value)
            if str(letter.get("consumer", "")).startswith(prefix):
                error_class = str(letter.get("error", "")).split(":", 1)[0]
                found[f"{letter['topic']} {letter['consumer'].removeprefix(prefix)} {error_class}"] += 1
    finally:
        consumer.close()
    return dict(found)


def test_seeded_fault_campaign_loses_duplicates_and_reorders_nothing(cluster, kafka_cluster, postgres):
    rng = random.Random(SEED)
    print(f"\nfault campaign seed {SEED} (replay: RELAIS_CAMPAIGN_SEED={SEED})")
    territory = load_territory("e2e-campaign")
    people = make_people()
    register_world(cluster, territory, people)
    orgs = (*TEAMS, CPTS)
    cursors = {org: read_feed(cluster, org, None)[1] for org in orgs}
    work = wait_for(lambda: (held := shared_work(cluster, kafka_cluster)) and len([n for n in held.values() if n]) >= 2
                    and held, timeout=90, message="both notifications replicas to hold partitions")

    tag = uuid.uuid4().hex[:6]
    began = time.monotonic()
    stream = Stream(cluster, territory, people, tag).start()
    nemesis = Nemesis(cluster, kafka_cluster, postgres, rng)
    nemesis.run(stream, began)
    stream.join(timeout=MESSAGES / RATE + 600)
    stream_seconds = time.monotonic() - began

    arrived: dict[str, list[FeedItem]] = {org: [] for org in orgs}
    admissions = {p.subject: p for p in stream.posted if p.event == "ADM"}
    discharges = {p.subject: p for p in stream.posted if p.event == "SOR"}

    def mine(org: str) -> list[FeedItem]:
        # A minimised recipient (the CPTS) gets an opaque Relais reference, not the hospital's subject: its
        # feed is this run's own, so everything after the cursor counts, matched by count and uniqueness.
        return [i for i in arrived[org] if i.subject and (tag in i.subject or org == CPTS)
                and i.event in ("admission.recorded", "discharge.recorded")]

    def cpts_counts() -> tuple[int, int]:
        items = mine(CPTS)
        return (len({i.subject for i in items if i.event == "admission.recorded"}),
                len({i.subject for i in items if i.event == "discharge.recorded"}))

    team_admissions = {(p.owner, s) for s, p in admissions.items() if p.owner != CPTS}
    team_discharges = {s for s, p in discharges.items() if p.owner != CPTS}
    cpts_sent = (sum(1 for p in admissions.values() if p.owner == CPTS),
                 sum(1 for p in discharges.values() if p.owner == CPTS))

    def everything_arrived() -> bool:
        for org in orgs:
            items, cursors[org] = read_feed(cluster, org, cursors[org])
            arrived[org].extend(items)
        got_adm = {(org, i.subject) for org in orgs for i in mine(org) if i.event == "admission.recorded"}
        got_sor = {i.subject for org in orgs for i in mine(org) if i.event == "discharge.recorded"}
        return team_admissions <= got_adm and team_discharges <= got_sor and cpts_counts() >= cpts_sent

    drain_started = time.monotonic()
    def missing() -> str:
        got = {(org, i.subject, i.event) for org in orgs for i in mine(org)}
        adm = sorted(f"{p.owner} {s}" for s, p in admissions.items() if (p.owner, s, "admission.recorded") not in got)
        sor = sorted(s for s in discharges if not any((org, s, "discharge.recorded") in got for org in orgs))
        adm = [entry for entry in adm if not entry.startswith(CPTS)]
        sor = [entry for entry in sor if discharges[entry].owner != CPTS]
        return f"missing admissions {adm}, missing discharges {sor}, CPTS got {cpts_counts()} of {cpts_sent}"

    wait_for(everything_arrived, timeout=300, interval=0.5,
             message=lambda: f"every notification (seed {SEED}, faults {nemesis.log}; {missing()}; "
                             f"dead letters {dead_letters(cluster, kafka_cluster)})\n{cluster.relais.logs()}")
    drain_seconds = time.monotonic() - drain_started
    for _ in range(5):  # a late duplicate would show up in a few more reads
        everything_arrived()
        time.sleep(0.2)

    report: dict = {"seed": SEED, "messages": MESSAGES, "rate_per_second": RATE, "posted": len(stream.posted),
                    "admissions": len(admissions), "discharges": len(discharges),
                    "stream_seconds": round(stream_seconds, 1), "drain_seconds_after_stream": round(drain_seconds, 1),
                    "retried_posts": dict(stream.retried), "faults": nemesis.log,
                    "notifications_partitions_per_replica": sorted(work.values()),
                    "dead_letters": dead_letters(cluster, kafka_cluster), "organisations": {}}
    for org in orgs:
        items = mine(org)
        by_key = Counter((i.event, i.subject) for i in items)
        owned = {s for s, p in admissions.items() if p.owner == org}
        got = {i.subject for i in items if i.event == "admission.recorded"}
        if org == CPTS:  # opaque references: as many distinct ones as admissions sent
            got = owned if len(got) == len(owned) else got
        # per patient: admissions and discharges in the order they were posted
        position = {(("admission.recorded" if p.event == "ADM" else "discharge.recorded"), p.subject): p
                    for p in stream.posted}
        # Per patient and per service: one service's messages share a partition; two services' do not.
        sequences: dict[tuple[str, str], list[int]] = defaultdict(list)
        for item in items:
            posted = position.get((item.event, item.subject))
            if posted is None:  # the CPTS's opaque references carry no posting order
                continue
            sequences[(posted.patient, item.event)].append(posted.order)
        report["organisations"][org] = {
            "admissions_sent": len(owned), "admissions_arrived": len(got & owned),
            "discharges_arrived": sum(1 for i in items if i.event == "discharge.recorded"),
            "lost": len(owned - got), "twice": sum(1 for n in by_key.values() if n > 1),
            "out_of_order_patients": sorted(f"{p}/{e}" for (p, e), seq in sequences.items() if seq != sorted(seq)),
        }
    discharged = Counter(i.subject for org in orgs for i in mine(org) if i.event == "discharge.recorded")
    report["discharges_lost"] = len(team_discharges - set(discharged)) + max(cpts_sent[1] - cpts_counts()[1], 0)
    out = REPO_ROOT / ".cache" / f"fault-campaign-{SEED}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print("\nfault campaign:\n" + json.dumps(report, indent=2))

    assert len(nemesis.log) >= FAULTS
    assert len(stream.posted) == MESSAGES
    assert report["discharges_lost"] == 0
    assert report["dead_letters"] == {}
    for org, counts in report["organisations"].items():
        assert counts["lost"] == 0 and counts["twice"] == 0, (org, counts)
        assert counts["admissions_arrived"] == counts["admissions_sent"], (org, counts)
        assert counts["out_of_order_patients"] == [], (org, counts)
