"""The snp service over HTTP on SQLite and the embedded log, with a settable clock."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from services.snp import domain
from services.snp.bootstrap import bootstrap
from services.snp.entrypoints.consumers import on_careteam_message
from services.snp.entrypoints.workers import expire_due, retry_waiting
from services.snp.handlers import stable_id
from services.snp.uow import SnpUnitOfWork
from shared.auth import Directory
from shared.bus.envelope import Envelope
from shared.events import TOPIC_NOTIFY_CPTS, TOPIC_NOTIFY_TEAM
from shared.identifiers import INS_NIR, make_nir, patient_key
from shared.settings import SnpSettings

START = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)  # a Monday, 09:00 in Paris


class Clock:
    def __init__(self, now: datetime = START) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"}


def availability(
    commune: str,
    starts: list[datetime],
    *,
    agenda: str = "agenda",
    kind: str = "transaction",
    minutes: int = 20,
    prefix: str = "slot",
) -> dict:
    entries = [
        {
            "fullUrl": f"urn:uuid:{stable_id(agenda, commune)}",
            "resource": {
                "resourceType": "Schedule",
                "id": agenda,
                "active": True,
                "actor": [
                    {
                        "type": "Location",
                        "identifier": {"system": domain.INSEE_COMMUNE_SYSTEM, "value": commune},
                    }
                ],
            },
        }
    ]
    for index, start in enumerate(starts):
        entries.append(
            {
                "resource": {
                    "resourceType": "Slot",
                    "id": f"{prefix}-{index}",
                    "meta": {"security": [{"code": "SNP"}]},
                    "schedule": {"reference": f"Schedule/{agenda}"},
                    "status": "free",
                    "start": start.isoformat(),
                    "end": (start + timedelta(minutes=minutes)).isoformat(),
                }
            }
        )
    return {"resourceType": "Bundle", "type": kind, "entry": entries}


def service_request(
    identifier: str, commune: str, urgency: str = "same-day", *, nir: str | None = None, reason: str = "fever"
) -> dict:
    return {
        "resourceType": "ServiceRequest",
        "status": "active",
        "intent": "order",
        "identifier": [{"value": identifier}],
        "category": [{"coding": [{"system": domain.URGENCY_SYSTEM, "code": urgency}]}],
        "reasonCode": [
            {
                "coding": [{"system": domain.REASON_SYSTEM, "code": reason}],
                "text": "Fièvre à 39 depuis trois jours, voisin de Mme Martin",
            }
        ],
        "note": [{"text": "patient anxieux, antécédent de cancer"}],
        "subject": {"identifier": {"system": INS_NIR, "value": nir or make_nir(1, 80, 5, "88", 516, 12)}},
        "locationCode": [{"coding": [{"system": domain.INSEE_COMMUNE_SYSTEM, "code": commune}]}],
    }


def status_params(code: str) -> dict:
    return {"resourceType": "Parameters", "parameter": [{"name": "status", "valueCode": code}]}


def careteam_changed(
    patient_key: str,
    team: str | None,
    *,
    postal_code: str = "88140",
    consent_opposed: bool = False,
    message_id: str | None = None,
) -> Envelope:
    data = {
        "patient_key": patient_key,
        "careteam_id": "ct-1" if team else None,
        "team_org_id": team,
        "status": "active" if team else "inactive",
        "referent": None,
        "consent_opposed": consent_opposed,
        "dac_case_open": False,
        "dac_org_id": None,
        "postal_code": postal_code,
    }
    return Envelope(
        type="careteam.changed",
        key=patient_key,
        data=data,
        source="admissions",
        **({"id": message_id} if message_id else {}),
    )


def territory_changed(postal_code: str, cpts: str) -> Envelope:
    return Envelope(
        type="territory.changed",
        key=postal_code,
        source="admissions",
        data={"postal_code": postal_code, "cpts_org_id": cpts, "dac_org_id": None},
    )


def outbox(engine, topic: str | None = None) -> list[dict]:
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT topic, value FROM outbox ORDER BY seq")).all()
    return [json.loads(value) | {"topic": t} for t, value in rows if topic is None or t == topic]


@pytest.fixture
def snp(tmp_path):
    clock = Clock()
    directory = Directory(f"sqlite:///{tmp_path / 'auth.sqlite'}")
    service = bootstrap(SnpSettings(data_dir=tmp_path), directory=directory, run_workers=False, clock=clock)
    client = TestClient(service.app)
    tokens = {
        org: directory.add(role, org, org)
        for role, org in [
            ("team", "msp-vittel"),
            ("team", "gp-contrex"),
            ("team", "gp-neufchateau"),
            ("sas", "sas-88"),
            ("cpts", "cpts-ouest"),
            ("cpts", "cpts-epinal"),
        ]
    }
    service.clock, service.client, service.tokens = clock, client, tokens
    service.uow = lambda: service.runtime.unit_of_work(SnpUnitOfWork)
    service.bus = service.app.state.bus
    for postal, cpts in [("88140", "cpts-ouest"), ("88800", "cpts-ouest"), ("88000", "cpts-epinal")]:
        on_careteam_message(service.bus, territory_changed(postal, cpts))
    yield service
    service.runtime.close()
    directory.close()


def publish(snp, org: str, body: dict):
    return snp.client.post("/snp/fhir/Slot/$bulk", json=body, headers=bearer(snp.tokens[org]))


def ask(snp, body: dict):
    return snp.client.post("/snp/fhir/ServiceRequest", json=body, headers=bearer(snp.tokens["sas-88"]))


def appointment_of(response) -> dict | None:
    entries = response.json()["entry"]
    return entries[1]["resource"] if len(entries) > 1 else None


def test_an_unplaceable_request_waits_then_a_new_slot_places_it(snp):
    response = ask(snp, service_request("r1", "88114"))
    assert response.status_code == 201 and appointment_of(response) is None
    assert response.json()["entry"][0]["resource"]["status"] == "active"
    publish(snp, "gp-contrex", availability("88114", [START + timedelta(hours=3)]))
    assert retry_waiting(snp.bus) == 1
    request_id = response.json()["entry"][0]["resource"]["id"]
    fetched = snp.client.get(f"/snp/fhir/ServiceRequest/{request_id}", headers=bearer(snp.tokens["sas-88"]))
    assert fetched.json()["status"] == "completed"


def test_free_text_never_leaves_intake(snp):
    publish(snp, "gp-contrex", availability("88114", [START + timedelta(hours=1)]))
    ask(snp, service_request("r1", "88114"))
    with snp.runtime.engine.connect() as connection:
        dump = " ".join(
            str(row)
            for table in ("snp_request", "snp_fact", "outbox", "audit_log")
            for row in connection.execute(text(f"SELECT * FROM {table}"))
        )
    assert "Martin" not in dump and "cancer" not in dump and "anxieux" not in dump


def test_the_cpts_gets_counts_without_patient_data(snp):
    publish(snp, "gp-contrex", availability("88114", [START + timedelta(hours=1)]))
    ask(snp, service_request("r1", "88114"))
    cpts = outbox(snp.runtime.engine, TOPIC_NOTIFY_CPTS)
    assert {m["type"] for m in cpts} == {"snp.requested", "snp.offered"}
    for message in cpts:
        assert message["key"] == "cpts-ouest" and message["data"]["detail"] == "organisational"
        assert message["data"]["patient_key"] is None
        assert set(message["data"]["payload"]) <= {"event", "commune", "occurred_at", "recorded_at"}
    offered = [m for m in outbox(snp.runtime.engine, TOPIC_NOTIFY_TEAM) if m["type"] == "snp.offered"]
    assert [m["key"] for m in offered] == ["gp-contrex"] and offered[0]["data"]["detail"] == "full"
    assert offered[0]["data"]["payload"]["type"] == "message"


def test_the_same_sas_request_sent_twice_is_one_request(snp):
    publish(
        snp, "gp-contrex", availability("88114", [START + timedelta(hours=1), START + timedelta(hours=2)])
    )
    first, second = ask(snp, service_request("r1", "88114")), ask(snp, service_request("r1", "88114"))
    assert (first.status_code, second.status_code) == (201, 200)
    assert appointment_of(first)["id"] == appointment_of(second)["id"]


def test_only_the_owner_withdraws_a_slot_and_a_withdrawn_slot_is_never_placed(snp):
    body = publish(snp, "gp-contrex", availability("88114", [START + timedelta(hours=1)])).json()
    slot = body["entry"][1]["response"]["location"].split("/")[1]
    other = snp.client.delete(f"/snp/fhir/Slot/{slot}", headers=bearer(snp.tokens["msp-vittel"]))
    assert other.status_code == 404  # as for an unknown slot: no existence oracle
    assert (
        snp.client.delete(f"/snp/fhir/Slot/{slot}", headers=bearer(snp.tokens["gp-contrex"])).status_code
        == 204
    )
    assert appointment_of(ask(snp, service_request("r1", "88114"))) is None


def test_a_transaction_with_a_bad_slot_stores_nothing_and_a_batch_stores_the_good_ones(snp):
    bad = availability("88114", [START + timedelta(hours=1), START + timedelta(hours=2)])
    bad["entry"][2]["resource"]["meta"]["security"] = [{"code": "VIP"}]  # not a TRE_R314 slot type
    refused = publish(snp, "gp-contrex", bad)
    assert refused.status_code == 422 and "Bundle.entry[2]" in refused.text
    bad["type"] = "batch"
    batch = publish(snp, "gp-contrex", bad).json()
    assert [e["response"]["status"][:3] for e in batch["entry"]] == ["200", "201", "422"]


def test_the_sas_role_alone_posts_requests(snp):
    response = snp.client.post(
        "/snp/fhir/ServiceRequest",
        json=service_request("r1", "88114"),
        headers=bearer(snp.tokens["gp-contrex"]),
    )
    assert response.status_code == 403 and response.json()["resourceType"] == "OperationOutcome"


def test_an_invalid_nir_is_refused(snp):
    body = service_request("r1", "88114", nir="180058851601299")
    assert ask(snp, body).status_code == 422


def test_appointment_life_cycle_and_who_may_change_it(snp):
    publish(snp, "gp-contrex", availability("88114", [START + timedelta(hours=1)]))
    appointment = appointment_of(ask(snp, service_request("r1", "88114")))
    url = f"/snp/fhir/Appointment/{appointment['id']}/$status"
    assert appointment["status"] == "pending"
    assert (
        snp.client.post(
            url, json=status_params("BOOKED"), headers=bearer(snp.tokens["msp-vittel"])
        ).status_code
        == 404
    )
    assert (
        snp.client.post(url, json=status_params("BOOKED"), headers=bearer(snp.tokens["gp-contrex"])).json()[
            "status"
        ]
        == "booked"
    )
    early = snp.client.post(url, json=status_params("NOSHOW"), headers=bearer(snp.tokens["sas-88"]))
    assert early.status_code == 409
    snp.clock.now = START + timedelta(hours=2)
    noshow = snp.client.post(url, json=status_params("NOSHOW"), headers=bearer(snp.tokens["sas-88"]))
    assert noshow.json()["status"] == "noshow"


def test_expiry_escalates_to_the_cpts_once_minimised(snp):
    ask(snp, service_request("r1", "88114", urgency="2h"))
    snp.clock.now = START + timedelta(hours=1)
    assert expire_due(snp.bus) == 0
    snp.clock.now = START + timedelta(hours=2, seconds=1)
    assert expire_due(snp.bus) == 1
    assert expire_due(snp.bus) == 0
    expired = [m for m in outbox(snp.runtime.engine, TOPIC_NOTIFY_CPTS) if m["type"] == "snp.expired"]
    assert len(expired) == 1
    data = expired[0]["data"]
    assert data["detail"] == "minimised" and data["recipient"] == "cpts-ouest"
    assert set(data["payload"]) == {
        "event",
        "patient_key",
        "commune",
        "age_band",
        "occurred_at",
        "recorded_at",
    }


def test_consent_opposition_keeps_the_expiry_from_the_cpts(snp):
    body = service_request("r1", "88114", urgency="2h")
    key = patient_key(INS_NIR, body["subject"]["identifier"]["value"], snp.runtime.settings.secret_key)
    on_careteam_message(snp.bus, careteam_changed(key, None, consent_opposed=True))
    ask(snp, body)
    snp.clock.now = START + timedelta(hours=3)
    assert expire_due(snp.bus) == 1
    assert not [m for m in outbox(snp.runtime.engine, TOPIC_NOTIFY_CPTS) if m["type"] == "snp.expired"]


def test_the_dashboard_is_for_the_territory_s_own_cpts(snp):
    publish(snp, "gp-contrex", availability("88114", [START + timedelta(hours=1)]))
    ask(snp, service_request("r1", "88114"))
    snp.clock.now = START + timedelta(days=1)  # the dashboard shows days that are over
    own = snp.client.get(
        "/snp/dashboard?territory=cpts-ouest&from=2026-11-23&to=2026-11-23",
        headers=bearer(snp.tokens["cpts-ouest"]),
    )
    # Issue 19: one request is below the small-cell threshold, totals included.
    assert own.status_code == 200 and own.json()["requests"] is None and own.json()["placed"] is None
    other = snp.client.get("/snp/dashboard?territory=cpts-ouest", headers=bearer(snp.tokens["cpts-epinal"]))
    assert other.status_code == 403
    assert snp.client.get("/snp/dashboard", headers=bearer(snp.tokens["sas-88"])).status_code == 403


def test_the_old_dashboard_address_leads_to_the_signed_in_page_and_keeps_its_filters(snp):
    moved = snp.client.get("/snp/dashboard/page?territory=88-ouest&from=2026-11-23", follow_redirects=False)
    assert moved.status_code == 308
    assert moved.headers["location"] == "/snp/app/dashboard?territory=88-ouest&from=2026-11-23"
    # Without a session the page sends the visitor to sign in: the page never asks for the token itself.
    page = snp.client.get(moved.headers["location"], follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"] == "/snp/app/signin"


def test_a_cancelled_appointment_frees_its_slot_and_tells_the_effecteur_and_the_cpts(snp):
    publish(snp, "gp-contrex", availability("88114", [START + timedelta(hours=1)]))
    appointment = appointment_of(ask(snp, service_request("r1", "88114")))
    url = f"/snp/fhir/Appointment/{appointment['id']}/$status"
    cancelled = snp.client.post(url, json=status_params("CANCELLED"), headers=bearer(snp.tokens["sas-88"]))
    assert cancelled.json()["status"] == "cancelled"
    notes = [m for m in outbox(snp.runtime.engine) if m["type"] == "snp.cancelled" and ".notify." in m["topic"]]
    assert sorted((m["topic"], m["data"]["detail"]) for m in notes) == [
        (TOPIC_NOTIFY_CPTS, "organisational"),
        (TOPIC_NOTIFY_TEAM, "full"),
    ]
    # The freed slot takes the next request.
    again = appointment_of(ask(snp, service_request("r2", "88114")))
    assert again["start"] == appointment["start"]


def test_an_older_care_team_snapshot_arriving_late_changes_nothing(snp):
    key = "k" * 32
    newer = careteam_changed(key, "msp-vittel")
    newer.data["at"] = (START + timedelta(minutes=5)).isoformat()
    older = careteam_changed(key, "gp-contrex")
    older.data["at"] = START.isoformat()
    assert on_careteam_message(snp.bus, newer) is True
    # Handled (its id is recorded) but not applied: the mirror keeps the newer team.
    assert on_careteam_message(snp.bus, older) is True
    assert on_careteam_message(snp.bus, older) is False
    with snp.uow() as uow:
        row = uow.mirrors.careteam(key)
        assert row is not None and row.team_org_id == "msp-vittel"
        assert row.source_time == newer.data["at"]


def test_a_refused_slot_withdrawal_is_audited_and_the_slot_stays(snp):
    body = publish(snp, "gp-contrex", availability("88114", [START + timedelta(hours=1)])).json()
    slot = body["entry"][1]["response"]["location"].split("/")[1]
    assert snp.client.delete(f"/snp/fhir/Slot/{slot}", headers=bearer(snp.tokens["msp-vittel"])).status_code == 404
    with snp.runtime.engine.connect() as connection:
        denied = connection.execute(
            text("SELECT action, organisation_id, resource FROM audit_log WHERE outcome = 'denied'")
        ).all()
        status = connection.execute(text("SELECT status FROM snp_slot WHERE id = :id"), {"id": slot}).scalar_one()
    assert [tuple(row) for row in denied] == [("snp.withdraw-slot", "msp-vittel", f"Slot/{slot}")]
    assert status == "free"
