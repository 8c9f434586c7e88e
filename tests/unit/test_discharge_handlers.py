"""Discharge service on SQLite and the embedded log: intake, handoff Task, mirror, notifications."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from services.discharge.adapters.orm import DischargeRow, TimerRow
from services.discharge.bootstrap import DischargeService, bootstrap
from shared.auth import Directory
from shared.bus.embedded import EmbeddedBus
from shared.bus.envelope import Envelope
from shared.contracts import notification_id
from shared.db.tables import AuditEntry, OutboxMessage
from shared.events import RELAIS_EVENT_SYSTEM, TOPIC_CARETEAM, TOPIC_DISCHARGE, EventType, Role
from shared.idempotence import sender_message_id
from shared.identifiers import INS_NIR_TEST, make_finess, patient_key
from shared.routing import Detail, Recipient
from shared.settings import DischargeSettings
from tests import factories as f

FINESS = f.DEFAULT_FINESS
OTHER_FINESS = make_finess("13000553")
TEAM, OTHER_TEAM, CPTS, DAC = "msp-vittel", "msp-other", "cpts-ouest-vosgien", "dac-88"
DISCHARGED_AT = datetime.fromisoformat("2024-05-09T11:00:00+02:00")
FHIR = {"Content-Type": "application/fhir+json"}


class FakeClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@dataclass
class Harness:
    service: DischargeService
    client: TestClient
    clock: FakeClock
    tokens: dict[str, str]
    secret: str

    def auth(self, org: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[org]}"}

    def post_message(self, bundle: dict, org: str = FINESS):
        return self.client.post(
            "/discharge/fhir/$process-message", content=f.body(bundle), headers={**FHIR, **self.auth(org)}
        )

    def careteam(self, *, team: str | None = TEAM, status: str = "active", nir: str = f.DEFAULT_NIR, **extra) -> None:
        data = {
            "patient_key": self.key(nir),
            "careteam_id": "ct-1" if team else None,
            "team_org_id": team,
            "status": status,
            "referent": {
                "rpps": "10001234565",
                "name": "Dr Référent",
                "telecom": [{"system": "phone", "value": "0329000000"}],
            },
            "consent_opposed": False,
            "dac_case_open": False,
            "dac_org_id": None,
            "postal_code": "75014",
            **extra,
        }
        self.deliver(Envelope(type="careteam.changed", key=data["patient_key"], data=data, source="admissions"))

    def territory(self, postal_code: str = "75014", cpts: str | None = CPTS, dac: str | None = DAC) -> None:
        data = {"postal_code": postal_code, "cpts_org_id": cpts, "dac_org_id": dac}
        self.deliver(Envelope(type="territory.changed", key=postal_code, data=data, source="admissions"))

    def deliver(self, envelope: Envelope) -> None:
        handler = self.service.careteam_consumer._handlers[TOPIC_CARETEAM]
        handler(envelope)

    def key(self, nir: str = f.DEFAULT_NIR) -> str:
        return patient_key(INS_NIR_TEST, nir, self.secret)

    def outbox(self, topic_prefix: str = "relais.notify") -> list[dict]:
        with self.service.runtime.sessions() as session:
            rows = session.execute(select(OutboxMessage).order_by(OutboxMessage.seq)).scalars().all()
        return [
            {"id": r.message_id, "topic": r.topic, "key": r.key, **json.loads(r.value)}
            for r in rows
            if r.topic.startswith(topic_prefix)
        ]

    def notifications(self, event: str | None = None) -> list[dict]:
        found = [m["data"] for m in self.outbox()]
        return [n for n in found if event is None or n["event"] == event]

    def recipients(self, event: str) -> set[tuple[str, str, str]]:
        return {(n["recipient"], n["role"], n["detail"]) for n in self.notifications(event)}

    def fire(self) -> int:
        return self.service.timers.run_once()


@pytest.fixture
def harness(tmp_path):
    secret = "unit-test-secret-" + "x" * 20
    # Reminders before a deadline have their own tests (test_orientation.py); here they would only add timers.
    settings = DischargeSettings(
        data_dir=tmp_path, environment="test", secret_key=secret, followup_reminder_hours=0
    )
    directory = Directory(f"sqlite:///{tmp_path / 'auth.sqlite'}")
    tokens = {
        FINESS: directory.add(Role.HOSPITAL, FINESS, "CHU Exemple"),
        OTHER_FINESS: directory.add(Role.HOSPITAL, OTHER_FINESS, "CH Autre"),
        TEAM: directory.add(Role.TEAM, TEAM, "MSP Vittel"),
        OTHER_TEAM: directory.add(Role.TEAM, OTHER_TEAM, "MSP Autre"),
        CPTS: directory.add(Role.CPTS, CPTS, "CPTS"),
    }
    clock = FakeClock(DISCHARGED_AT + timedelta(hours=1))
    bus = EmbeddedBus(f"sqlite:///{tmp_path / 'bus.sqlite'}")
    service = bootstrap(settings, bus=bus, directory=directory, run_workers=False, clock=clock)
    with TestClient(service.app) as client:
        yield Harness(service, client, clock, tokens, secret)
    service.runtime.close()
    directory.close()
    bus.close()


def task_ids(response_bundle: dict) -> dict[str, list[str]]:
    tasks: dict[str, list[str]] = {}
    for entry in response_bundle["entry"]:
        resource = entry["resource"]
        if resource["resourceType"] == "Task":
            tasks.setdefault(resource["code"]["coding"][0]["code"], []).append(resource["id"])
    return tasks


# --- intake ---------------------------------------------------------------------------------------------


def test_discharge_sends_the_team_the_full_message_with_the_handoff_task(harness):
    harness.territory()
    harness.careteam()
    response = harness.post_message(f.full_discharge_message(message_id="m-1"))
    assert response.status_code == 200, response.text
    tasks = task_ids(response.json())
    assert len(tasks["handoff"]) == 1 and len(tasks) == 4  # handoff + nurse, GP, specialist
    recorded = harness.notifications("discharge.recorded")
    assert [(n["recipient"], n["detail"]) for n in recorded] == [(TEAM, "full")]
    payload = recorded[0]["payload"]
    types = [e["resource"]["resourceType"] for e in payload["entry"]]
    assert types[0] == "MessageHeader" and "CarePlan" in types and "DocumentReference" in types
    handoff = [e["resource"] for e in payload["entry"] if e["resource"].get("id") == tasks["handoff"][0]]
    assert handoff and handoff[0]["status"] == "requested"
    assert harness.recipients("handoff.proposed") == {(TEAM, "team", "full"), (FINESS, "hospital", "full")}


def test_notification_ids_are_deterministic_per_message_recipient_role_and_event(harness):
    harness.careteam()
    harness.post_message(f.full_discharge_message(message_id="m-det"))
    message = next(m for m in harness.outbox() if m["type"] == "discharge.recorded")
    recipient = Recipient(Role.TEAM, TEAM, Detail.FULL, "relais.notify.team", "x")
    # the message key is the Bundle.id scoped by its sender (two hospitals may use the same Bundle.id)
    scoped = sender_message_id(f.DEFAULT_FINESS, "m-det")
    assert message["id"] == notification_id(scoped, recipient, EventType.DISCHARGE_RECORDED)
    assert message["key"] == TEAM and message["topic"] == "relais.notify.team"
    # The kernel's versioned contract (shared/contracts.py): "v" is its version.
    assert set(message["data"]) == {
        "v",
        "recipient",
        "role",
        "detail",
        "event",
        "patient_key",
        "sender",
        "subject",
        "payload",
    }


def test_a_replayed_message_gets_the_stored_answer_and_sends_nothing_new(harness):
    harness.careteam()
    bundle = f.full_discharge_message(message_id="m-replay")
    first = harness.post_message(bundle)
    count = len(harness.outbox(""))
    again = harness.post_message(bundle)
    assert again.status_code == 200 and again.json() == first.json()
    assert len(harness.outbox("")) == count


def test_the_same_message_id_with_other_content_is_a_conflict(harness):
    harness.post_message(f.full_discharge_message(message_id="m-x"))
    changed = f.full_discharge_message(message_id="m-x", nda="NDA-OTHER")
    response = harness.post_message(changed)
    assert response.status_code == 409
    assert response.json()["resourceType"] == "OperationOutcome"


def test_an_admission_sent_here_is_refused_naming_the_admissions_endpoint(harness):
    response = harness.post_message(f.admission_message())
    assert response.status_code == 422
    assert "/admissions/fhir/$process-message" in response.json()["issue"][0]["diagnostics"]


def test_only_hospitals_may_post_and_only_for_their_own_finess(harness):
    bundle = f.full_discharge_message()
    assert harness.post_message(bundle, org=TEAM).status_code == 403
    assert harness.post_message(bundle, org=OTHER_FINESS).status_code == 403


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        (lambda enc, pat: enc.pop("hospitalization"), "dischargeDisposition"),
        (lambda enc, pat: enc.update(status="in-progress"), "Encounter.status"),
        (lambda enc, pat: pat["identifier"][0].update(value="255037511402799"), "NIR"),
    ],
)
def test_an_incomplete_discharge_is_unprocessable(harness, mutate, fragment):
    bundle = f.full_discharge_message()
    resources = {e["resource"]["resourceType"]: e["resource"] for e in bundle["entry"]}
    mutate(resources["Encounter"], resources["Patient"])
    response = harness.post_message(bundle)
    assert response.status_code == 422, response.text
    assert fragment in json.dumps(response.json())


def test_a_patient_without_a_team_is_signalled_minimised_to_the_cpts(harness):
    harness.territory()
    response = harness.post_message(f.full_discharge_message())
    assert response.status_code == 200
    assert "handoff" not in task_ids(response.json())
    [cpts] = harness.notifications("discharge.recorded")
    assert (cpts["recipient"], cpts["detail"]) == (CPTS, "minimised")
    assert set(cpts["payload"]) == {
        "event",
        "patient_key",
        "commune",
        "age_band",
        "occurred_at",
        "recorded_at",
    }
    assert cpts["payload"]["age_band"] == "60-74" and "MARTIN" not in json.dumps(cpts)


def test_a_patient_known_only_by_a_local_identifier_is_not_signalled_to_the_cpts(harness):
    harness.territory()
    message = f.full_discharge_message()
    patient = next(e["resource"] for e in message["entry"] if e["resource"]["resourceType"] == "Patient")
    patient["identifier"] = [{"system": "urn:oid:1.2.250.1.999.1.1", "value": "IPP-42"}]
    assert harness.post_message(message).status_code == 200
    assert harness.notifications("discharge.recorded") == []


def test_consent_opposition_keeps_the_cpts_out(harness):
    harness.territory()
    harness.careteam(team=None, status="inactive", consent_opposed=True)
    harness.post_message(f.full_discharge_message())
    assert harness.notifications("discharge.recorded") == []


def test_a_complex_discharge_reaches_the_dac_with_full_detail(harness):
    harness.territory()
    harness.careteam()
    harness.post_message(f.full_discharge_message(complexity=("frailty",)))
    assert harness.recipients("discharge.recorded") == {(TEAM, "team", "full"), (DAC, "dac", "full")}


def test_a_condition_code_counts_as_a_complexity_criterion(harness):
    harness.territory()
    harness.careteam()
    harness.post_message(f.full_discharge_message(conditions=[("C50.9", "Tumeur du sein")]))
    assert (DAC, "dac", "full") in harness.recipients("discharge.recorded")


def test_readmission_within_30_days_is_flagged_and_makes_the_case_complex(harness):
    harness.territory()
    harness.careteam()
    harness.post_message(f.full_discharge_message(nda="NDA-1"))
    again = f.full_discharge_message(nda="NDA-2", start="2024-05-20T09:00:00+02:00", end="2024-05-25T11:00:00+02:00")
    harness.clock.now = datetime.fromisoformat("2024-05-25T12:00:00+02:00")
    response = harness.post_message(again)
    assert "readmission within 30 days" in json.dumps(response.json())
    with harness.service.runtime.sessions() as session:
        rows = session.execute(select(DischargeRow).order_by(DischargeRow.recorded_at)).scalars().all()
    assert [(r.readmission, r.complex_case) for r in rows] == [(False, False), (True, True)]
    assert "readmission-30d" in rows[1].flags


def test_a_discharge_without_a_prior_admission_is_accepted(harness):
    # This service never saw the admission (it lives in another service): nothing more is needed.
    assert harness.post_message(f.full_discharge_message()).status_code == 200


def test_no_care_plan_means_the_default_gp_visit_within_seven_days(harness):
    harness.careteam()
    response = harness.post_message(f.full_discharge_message(plan=None))
    [item] = [
        e["resource"]
        for e in response.json()["entry"]
        if e["resource"]["resourceType"] == "Task" and e["resource"]["code"]["coding"][0]["code"] == "gp-visit"
    ]
    assert item["restriction"]["period"]["end"] == "2024-05-16T09:00:00Z"


def test_cancellation_goes_to_the_original_recipients_and_cancels_the_plan(harness):
    harness.territory()
    harness.careteam()
    harness.post_message(f.full_discharge_message(message_id="orig"))
    harness.territory(cpts="cpts-new")  # a later change must not widen who hears of the cancellation
    cancel = f.full_discharge_message(message_id="cancel", event=(RELAIS_EVENT_SYSTEM, "cancel-discharge"))
    response = harness.post_message(cancel)
    assert response.status_code == 200, response.text
    assert harness.recipients("discharge.cancelled") == {(TEAM, "team", "full")}
    with harness.service.runtime.sessions() as session:
        pending = session.execute(select(TimerRow).where(TimerRow.fired_at.is_(None))).scalars().all()
    assert pending == []


def test_a_revision_without_an_original_is_unprocessable(harness):
    revise = f.full_discharge_message(event=(RELAIS_EVENT_SYSTEM, "revise-discharge"))
    assert harness.post_message(revise).status_code == 422


# --- the handoff Task -----------------------------------------------------------------------------------


def _handoff(harness, **kwargs) -> str:
    response = harness.post_message(f.full_discharge_message(**kwargs))
    assert response.status_code == 200, response.text
    return task_ids(response.json())["handoff"][0]


def test_team_accepts_and_the_hospital_reads_accepted(harness):
    harness.careteam()
    task_id = _handoff(harness)
    accepted = harness.client.post(f"/discharge/fhir/Task/{task_id}/$accept", headers=harness.auth(TEAM))
    assert accepted.status_code == 200 and accepted.json()["status"] == "accepted"
    read = harness.client.get(f"/discharge/fhir/Task/{task_id}", headers=harness.auth(FINESS))
    assert read.status_code == 200 and read.json()["status"] == "accepted"
    assert harness.recipients("handoff.accepted") == {(TEAM, "team", "full"), (FINESS, "hospital", "full")}


def test_strangers_cannot_see_or_act_on_a_task(harness):
    harness.careteam()
    task_id = _handoff(harness)
    assert harness.client.get(f"/discharge/fhir/Task/{task_id}", headers=harness.auth(OTHER_TEAM)).status_code == 404
    assert harness.client.get(f"/discharge/fhir/Task/{task_id}", headers=harness.auth(CPTS)).status_code == 404
    assert harness.client.get(f"/discharge/fhir/Task/{task_id}", headers=harness.auth(OTHER_FINESS)).status_code == 404
    assert (
        harness.client.post(f"/discharge/fhir/Task/{task_id}/$accept", headers=harness.auth(OTHER_TEAM)).status_code
        == 404
    )
    assert (
        harness.client.post(f"/discharge/fhir/Task/{task_id}/$accept", headers=harness.auth(FINESS)).status_code == 403
    )


def test_decline_needs_a_reason_and_asks_the_cpts_and_the_dac_if_complex(harness):
    harness.territory()
    harness.careteam()
    task_id = _handoff(harness, dac_request=True)
    url = f"/discharge/fhir/Task/{task_id}/$decline"
    assert harness.client.post(url, headers=harness.auth(TEAM)).status_code == 422
    params = {
        "resourceType": "Parameters",
        "parameter": [{"name": "reason", "valueString": "Patientèle complète"}],
    }
    declined = harness.client.post(url, json=params, headers={**FHIR, **harness.auth(TEAM)})
    assert declined.status_code == 200 and declined.json()["status"] == "rejected"
    assert declined.json()["statusReason"]["text"] == "Patientèle complète"
    assert harness.recipients("handoff.declined") == {
        (TEAM, "team", "full"),
        (FINESS, "hospital", "full"),
        (CPTS, "cpts", "minimised"),
        (DAC, "dac", "full"),
    }
    again = harness.client.post(f"/discharge/fhir/Task/{task_id}/$accept", headers=harness.auth(TEAM))
    assert again.status_code == 409


def test_the_hospital_cancels_its_handoff_and_the_expiry_no_longer_fires(harness):
    harness.careteam()
    task_id = _handoff(harness)
    cancelled = harness.client.post(f"/discharge/fhir/Task/{task_id}/$cancel", headers=harness.auth(FINESS))
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    # Both sides of the handoff learn of the withdrawal, and nobody else.
    assert harness.recipients("handoff.cancelled") == {(TEAM, "team", "full"), (FINESS, "hospital", "full")}
    harness.clock.advance(hours=49)
    harness.fire()
    assert harness.notifications("handoff.expired") == []


def test_a_domain_event_is_published_per_discharge_keyed_by_patient(harness):
    harness.careteam()
    harness.post_message(f.full_discharge_message())
    [event] = [m for m in harness.outbox(TOPIC_DISCHARGE) if m["type"] == "discharge.recorded"]
    assert event["key"] == harness.key() and "payload" not in event["data"]


# --- the care-team mirror -------------------------------------------------------------------------------


def test_the_mirror_is_idempotent_and_ignores_older_messages(harness):
    key = harness.key()
    newer = Envelope(
        type="careteam.changed",
        key=key,
        source="admissions",
        time="2026-01-02T00:00:00+00:00",
        data={"patient_key": key, "team_org_id": TEAM, "status": "active"},
    )
    older = Envelope(
        type="careteam.changed",
        key=key,
        source="admissions",
        time="2026-01-01T00:00:00+00:00",
        data={"patient_key": key, "team_org_id": OTHER_TEAM, "status": "active"},
    )
    harness.deliver(newer)
    harness.deliver(newer)
    harness.deliver(older)
    with harness.service.unit_of_work() as uow:
        assert uow.mirror.careteam(key).team_org_id == TEAM


# --- refusals are audited, in their own transaction ------------------------------------------------------


def _denied(harness) -> list[tuple[str | None, str, str | None]]:
    with harness.service.runtime.sessions() as session:
        rows = session.execute(select(AuditEntry).where(AuditEntry.outcome == "denied")).scalars().all()
    return [(r.organisation_id, r.action, r.resource) for r in rows]


def test_a_stranger_acting_on_a_task_gets_404_and_the_attempt_is_audited(harness):
    harness.careteam()
    task_id = _handoff(harness)
    url = f"/discharge/fhir/Task/{task_id}/$accept"
    assert harness.client.post(url, headers=harness.auth(OTHER_TEAM)).status_code == 404
    assert _denied(harness) == [(OTHER_TEAM, "handoff.accept", f"Task/{task_id}")]
    # The refusal did not leave the Task changed, and its owner can still accept it.
    assert harness.client.post(url, headers=harness.auth(TEAM)).json()["status"] == "accepted"


def test_another_hospitals_message_is_refused_and_audited(harness):
    assert harness.post_message(f.full_discharge_message(), org=OTHER_FINESS).status_code == 403
    assert [(org, resource) for org, _action, resource in _denied(harness)] == [
        (OTHER_FINESS, "/discharge/fhir/$process-message")
    ]
