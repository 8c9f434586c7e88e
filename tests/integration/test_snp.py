"""The snp service on real PostgreSQL and a real Kafka-protocol broker (Tansu): placement, races, expiry,
the CPTS dashboard. Each test gets a fresh database and its own organisation ids on the shared broker."""

from __future__ import annotations

import json
import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from kafka import KafkaConsumer
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError

from services.snp.adapters.orm import AppointmentRow
from services.snp.bootstrap import bootstrap
from services.snp.commands import RequestSnp
from services.snp.domain import Urgency
from services.snp.entrypoints.workers import expire_due
from services.snp.uow import SnpUnitOfWork
from shared.auth import Directory
from shared.bus.envelope import Envelope
from shared.bus.kafka import KafkaBus
from shared.events import TOPIC_CARETEAM, TOPIC_NOTIFY_CPTS, TOPIC_NOTIFY_TEAM, TOPIC_SNP
from shared.identifiers import INS_NIR, make_nir, patient_key
from shared.settings import SnpSettings
from tests.infra.wait import wait_for
from tests.unit.test_snp_service import (
    Clock,
    availability,
    bearer,
    careteam_changed,
    service_request,
    status_params,
    territory_changed,
)

pytestmark = [pytest.mark.postgres, pytest.mark.kafka]
TIMEOUT = 60


class Harness:
    def __init__(self, postgres_url: str, broker, tmp_path) -> None:
        self.suffix = uuid.uuid4().hex[:6]
        # A fixed morning (08:00 in Paris) on the injectable clock: "same day" windows never depend on
        # when the suite runs.
        now = (datetime.now(UTC) + timedelta(days=1)).replace(hour=7, minute=0, second=0, microsecond=0)
        self.start = now
        self.clock = Clock(now)
        self.bus = KafkaBus(broker.bootstrap, api_version=broker.api_version, session_timeout_ms=2_000)
        self.bus.ensure_topics([TOPIC_CARETEAM, TOPIC_SNP, TOPIC_NOTIFY_TEAM, TOPIC_NOTIFY_CPTS])
        self.directory = Directory(f"sqlite:///{tmp_path / 'auth.sqlite'}")
        settings = SnpSettings(
            data_dir=tmp_path,
            database_url=postgres_url,
            kafka_bootstrap_servers=broker.bootstrap,
            kafka_session_timeout_ms=2_000,
            environment="test",
            small_cell_threshold=1,  # the dashboard test checks the arithmetic; suppression has its unit tests
        )
        self.service = bootstrap(
            settings, bus=self.bus, directory=self.directory, clock=self.clock, worker_interval=0.2
        )
        self.client = TestClient(self.service.app).__enter__()  # lifespan: relay, consumer, deadline worker
        self.engine = self.service.runtime.engine
        self.tokens: dict[str, str] = {}
        for role, name in [
            ("team", "msp-vittel"),
            ("team", "gp-vittel"),
            ("team", "gp-contrex"),
            ("team", "gp-neufchateau"),
            ("sas", "sas-88"),
            ("cpts", "cpts-ouest"),
        ]:
            self.tokens[name] = self.directory.add(role, self.org(name), name)

    def org(self, name: str) -> str:
        return f"{name}-{self.suffix}"

    def uow(self) -> SnpUnitOfWork:
        return self.service.runtime.unit_of_work(SnpUnitOfWork)

    def send(self, *envelopes: Envelope) -> None:
        producer = self.bus.producer()
        for envelope in envelopes:
            producer.send(TOPIC_CARETEAM, envelope.key, envelope.to_json().encode())
        producer.flush()
        producer.close()

    def mirror_territory(self) -> None:
        self.send(
            *(territory_changed(p, self.org("cpts-ouest")) for p in ("88140", "88800", "88300", "88500"))
        )
        # The topic is shared with other tests' territories: count only this harness's CPTS.
        wait_for(
            lambda: self.count(
                "SELECT count(*) FROM snp_territory WHERE cpts_org_id = :cpts", cpts=self.org("cpts-ouest")
            ) == 4,
            TIMEOUT,
            message="territory mirror",
        )

    def count(self, sql: str, **params) -> int:
        with self.engine.connect() as connection:
            return connection.execute(text(sql), params).scalar_one()

    def publish(self, name: str, commune: str, starts: list[datetime], agenda: str = "agenda") -> None:
        body = availability(commune, starts, agenda=agenda, prefix=f"{agenda}-slot")
        response = self.client.post("/snp/fhir", json=body, headers=bearer(self.tokens[name]))
        assert response.status_code == 200, response.text

    def ask(self, identifier: str, commune: str, urgency: str = "same-day", nir: str | None = None) -> dict:
        response = self.client.post(
            "/snp/fhir/ServiceRequest",
            json=service_request(identifier, commune, urgency, nir=nir),
            headers=bearer(self.tokens["sas-88"]),
        )
        assert response.status_code == 201, response.text
        entries = response.json()["entry"]
        return {
            "request": entries[0]["resource"],
            "appointment": entries[1]["resource"] if len(entries) > 1 else None,
        }

    def effecteur(self, placed: dict) -> str:
        participant = placed["appointment"]["participant"][1]["actor"]["identifier"]["value"]
        return participant.removesuffix(f"-{self.suffix}")

    def delivered(self, topic: str, predicate) -> list[dict]:
        """Messages of `topic` on the broker that satisfy `predicate` (read from the start, bounded)."""
        consumer = KafkaConsumer(
            topic,
            bootstrap_servers=self.bus.bootstrap_servers,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            group_id=None,
            consumer_timeout_ms=1_500,
        )
        try:
            values = [json.loads(record.value) for record in consumer]
        finally:
            consumer.close()
        return [v for v in values if predicate(v)]

    def close(self) -> None:
        self.client.__exit__(None, None, None)
        self.service.runtime.close()
        self.directory.close()


@pytest.fixture
def snp(postgres_url, tansu, tmp_path):
    harness = Harness(postgres_url, tansu, tmp_path)
    try:
        harness.mirror_territory()
        yield harness
    finally:
        harness.close()


def nir(order: int) -> str:
    return make_nir(2, 75, 3, "88", 516, order)


def test_a_patient_with_a_team_is_placed_with_that_team_first(snp):
    key = patient_key(INS_NIR, nir(1), snp.service.runtime.settings.secret_key)
    snp.send(careteam_changed(key, snp.org("msp-vittel"), message_id=str(uuid.uuid4())))
    wait_for(
        lambda: snp.count("SELECT count(*) FROM snp_careteam WHERE patient_key = :key", key=key) == 1,
        TIMEOUT,
        message="care-team mirror",
    )
    # The pool has an earlier, nearer slot; the team's own slot still wins.
    snp.publish("gp-contrex", "88114", [snp.start + timedelta(hours=1)])
    snp.publish("msp-vittel", "88516", [snp.start + timedelta(hours=5)])
    placed = snp.ask("own-1", "88114", nir=nir(1))
    assert snp.effecteur(placed) == "msp-vittel"
    assert placed["appointment"]["start"].startswith(
        (snp.start + timedelta(hours=5)).strftime("%Y-%m-%dT%H:%M")
    )
    # The offer reaches the team on the real broker, full detail, keyed by the recipient.
    offers = wait_for(
        lambda: snp.delivered(
            TOPIC_NOTIFY_TEAM, lambda v: v["key"] == snp.org("msp-vittel") and v["type"] == "snp.offered"
        ),
        TIMEOUT,
        message="snp.offered on relais.notify.team",
    )
    assert offers[0]["data"]["detail"] == "full" and offers[0]["data"]["patient_key"] == key


def test_a_redelivered_careteam_message_is_handled_once(snp):
    envelope = careteam_changed("k-" + snp.suffix, snp.org("msp-vittel"), message_id=str(uuid.uuid4()))
    snp.send(envelope, envelope)
    wait_for(
        lambda: snp.count("SELECT count(*) FROM inbox WHERE message_id = :id", id=envelope.id) == 1,
        TIMEOUT,
        message="inbox row",
    )
    assert snp.count("SELECT count(*) FROM snp_careteam WHERE patient_key = :key", key=envelope.key) == 1


def test_the_pool_orders_by_earliest_slot_then_distance_then_load(snp):
    at = snp.start + timedelta(hours=1)
    snp.publish("gp-neufchateau", "88321", [snp.start + timedelta(minutes=30), at], agenda="neuf")
    snp.publish("gp-contrex", "88114", [at])
    snp.publish("msp-vittel", "88516", [at])
    order = [snp.effecteur(snp.ask(f"pool-{i}", "88114")) for i in range(4)]
    # earliest beats distance; then at one time: Contrexéville (0 km), Vittel (4 km), Neufchâteau (31 km)
    assert order == ["gp-neufchateau", "gp-contrex", "msp-vittel", "gp-neufchateau"]
    # Same time, same commune: msp-vittel already holds one live appointment, gp-vittel none.
    later = snp.start + timedelta(hours=3)
    snp.publish("msp-vittel", "88516", [later], agenda="vittel-2")
    snp.publish("gp-vittel", "88516", [later])
    assert snp.effecteur(snp.ask("pool-load", "88516")) == "gp-vittel"


def test_concurrent_requests_never_book_the_same_slot(snp):
    snp.publish("gp-contrex", "88114", [snp.start + timedelta(hours=1)])
    barrier = threading.Barrier(8)
    results: list[object] = []

    def place(index: int) -> None:
        command = RequestSnp(
            snp.org("sas-88"), f"race-{index}", INS_NIR, nir(100 + index), "88114", Urgency.SAME_DAY, "fever"
        )
        barrier.wait(timeout=30)
        try:
            view = snp.service.app.state.bus.handle(command)
            results.append(view.appointment.id if view.appointment else None)
        except Exception as exc:
            results.append(exc)

    threads = [threading.Thread(target=place, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=TIMEOUT)
    assert not [r for r in results if isinstance(r, Exception)], results
    assert len([r for r in results if r]) == 1
    assert snp.count("SELECT count(*) FROM snp_appointment") == 1
    assert snp.count("SELECT count(*) FROM snp_request WHERE state = 'waiting'") == 7


def test_the_database_refuses_a_second_live_appointment_on_a_slot(snp):
    snp.publish("gp-contrex", "88114", [snp.start + timedelta(hours=1)])
    first = snp.ask("one", "88114")["appointment"]
    with snp.uow() as uow:
        row = uow.appointments.get(first["id"])
        uow.appointments.add(
            AppointmentRow(
                id=str(uuid.uuid4()),
                request_id="other",
                slot_id=row.slot_id,
                org_id=row.org_id,
                via="pool",
                status="pending",
                start=row.start,
                end=row.end,
                created_at=snp.start,
                updated_at=snp.start,
            )
        )
        with pytest.raises(IntegrityError):
            uow.commit()


def test_an_unplaced_request_expires_once_and_goes_to_the_cpts(snp):
    snp.ask("late-1", "88114", urgency="2h")
    snp.clock.now = snp.start + timedelta(hours=2, minutes=1)
    # The background worker runs too; extra concurrent sweeps must not double the escalation.
    sweeps = [threading.Thread(target=expire_due, args=(snp.service.app.state.bus,)) for _ in range(3)]
    for sweep in sweeps:
        sweep.start()
    for sweep in sweeps:
        sweep.join(timeout=TIMEOUT)
    wait_for(lambda: snp.count("SELECT count(*) FROM snp_request WHERE state = 'expired'") == 1, TIMEOUT)
    wait_for(lambda: snp.service.runtime.relay.pending() == 0, TIMEOUT, message="outbox relayed")
    assert (
        snp.count(
            "SELECT count(*) FROM outbox WHERE event_type = 'snp.expired' AND topic = :t", t=TOPIC_NOTIFY_CPTS
        )
        == 1
    )
    escalations = wait_for(
        lambda: snp.delivered(
            TOPIC_NOTIFY_CPTS, lambda v: v["key"] == snp.org("cpts-ouest") and v["type"] == "snp.expired"
        ),
        TIMEOUT,
        message="snp.expired on relais.notify.cpts",
    )
    assert len(escalations) == 1
    payload = escalations[0]["data"]["payload"]
    assert escalations[0]["data"]["detail"] == "minimised" and payload["commune"] == "88114"
    assert "subject" not in json.dumps(payload) and nir(1) not in json.dumps(escalations[0])


def test_dashboard_figures_equal_a_hand_computation(snp):
    t0 = snp.start
    snp.publish("gp-contrex", "88114", [t0 + timedelta(hours=1), t0 + timedelta(hours=3)])
    snp.publish("msp-vittel", "88516", [t0 + timedelta(hours=4)])
    # Four requests at t0: three placed (60, 180 and 240 minutes after request), one expires unplaced.
    a = snp.ask("d1", "88114", "2h")  # Contrex +1 h, within its 2 h
    b = snp.ask("d2", "88114", "same-day")  # Contrex +3 h
    c = snp.ask("d3", "88516", "48h")  # Vittel +4 h
    d = snp.ask("d4", "88114", "2h")  # nothing left before t0 + 2 h
    assert d["appointment"] is None and all(x["appointment"] for x in (a, b, c))
    for placed in (a, b, c):
        url = f"/snp/fhir/Appointment/{placed['appointment']['id']}/$status"
        who = bearer(snp.tokens[snp.effecteur(placed)])
        assert snp.client.post(url, json=status_params("booked"), headers=who).status_code == 200
    snp.clock.now = t0 + timedelta(hours=5)
    url = f"/snp/fhir/Appointment/{b['appointment']['id']}/$status"
    assert (
        snp.client.post(
            url, json=status_params("NOSHOW"), headers=bearer(snp.tokens["gp-contrex"])
        ).status_code
        == 200
    )
    wait_for(lambda: snp.count("SELECT count(*) FROM snp_request WHERE state = 'expired'") == 1, TIMEOUT)

    day = t0.strftime("%Y-%m-%d")
    snp.clock.now = t0 + timedelta(days=1)  # the dashboard shows days that are over
    response = snp.client.get(
        f"/snp/dashboard?territory={snp.org('cpts-ouest')}&from={(t0 - timedelta(days=1)).date()}&to={day}",
        headers=bearer(snp.tokens["cpts-ouest"]),
    )
    assert response.status_code == 200, response.text
    board = response.json()
    # by hand: 4 requests, 3 placed, all 3 within deadline -> 0.75; minutes 60, 180, 240:
    # median 180, p90 = 180 + 0.8 * 60 = 228; 1 no-show; 1 unplaced (expired)
    assert board["requests"] == 4
    assert board["placed"] == 3 and board["placed_within_deadline"] == 3
    assert board["share_placed_within_deadline"] == 0.75
    assert board["time_to_appointment_minutes"] == {"count": 3, "median": 180.0, "p90": 228.0}
    assert board["noshows"] == 1 and board["unplaced"] == 1 and board["expired"] == 1
    by_urgency = {row["key"]: (row["requests"], row["placed_within_deadline"]) for row in board["by_urgency"]}
    assert by_urgency == {"2h": (2, 1), "same-day": (1, 1), "48h": (1, 1)}
    by_commune = {row["key"]: row["requests"] for row in board["by_commune"]}
    assert by_commune == {"88114": 3, "88516": 1}
    by_effecteur = {row["key"]: (row["placed"], row["noshows"]) for row in board["by_effecteur"]}
    assert by_effecteur == {snp.org("gp-contrex"): (2, 1), snp.org("msp-vittel"): (1, 0)}
    assert sum(row["requests"] for row in board["by_hour"]) == 4
    with snp.uow() as uow:
        assert uow.session.execute(select(func.count()).select_from(AppointmentRow)).scalar_one() == 3
