"""Work an attacker can make a service do: parse on the event loop, unbounded plans, envelopes the bus cannot
carry, one poisoned timer holding the others, tables that grow for ever. Loopback only, bounded."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text
from sqlalchemy.exc import DataError

from services.admissions.bootstrap import bootstrap as admissions_bootstrap
from services.admissions.entrypoints import fhir as admissions_routes
from services.discharge.adapters.orm import TimerRow
from services.discharge.adapters.orm import retention_rules as discharge_rules
from services.discharge.bootstrap import bootstrap as discharge_bootstrap
from services.discharge.domain import TimerKind
from services.discharge.entrypoints import api as discharge_routes
from services.discharge.handlers import timers as timer_handlers
from services.notifications.adapters.orm import retention_rules as notification_rules
from services.notifications.bootstrap import bootstrap as notifications_bootstrap
from shared.retention import purge
from shared.settings import AdmissionsSettings, DischargeSettings, NotificationsSettings
from tests import factories as f
from tests.security.conftest import live_server
from tests.unit import test_discharge_handlers as handlers_suite
from tests.unit.test_notifications_service import Receiver, publish

pytestmark = pytest.mark.attack

harness = handlers_suite.harness  # the discharge service on SQLite with a fake clock
FHIR = {"Content-Type": "application/fhir+json"}


def _large(bundle: dict[str, Any], conditions: int) -> dict[str, Any]:
    """A valid message grown with Conditions (each a full resource the models validate)."""
    kinds = {e["resource"]["resourceType"]: e["resource"] for e in bundle["entry"]}
    patient, encounter = f"Patient/{kinds['Patient']['id']}", f"Encounter/{kinds['Encounter']['id']}"
    for _ in range(conditions):
        resource = f.condition(patient_ref=patient, encounter_ref=encounter)
        bundle["entry"].append({"fullUrl": f"urn:uuid:{resource['id']}", "resource": resource})
    return bundle


@pytest.mark.parametrize(
    ("bootstrap", "settings", "routes", "path", "message"),
    [
        (admissions_bootstrap, AdmissionsSettings, admissions_routes, "/admissions/fhir/$process-message",
         f.admission_message),
        (discharge_bootstrap, DischargeSettings, discharge_routes, "/discharge/fhir/$process-message",
         f.full_discharge_message),
    ],
    ids=["admissions", "discharge"],
)
def test_healthz_answers_while_a_large_admission_is_being_parsed(
    tmp_path, monkeypatch, bootstrap, settings, routes, path, message
):
    service = bootstrap(settings(environment="test", data_dir=tmp_path), run_workers=False)
    token = service.runtime.directory.add("hospital", f.DEFAULT_FINESS, "CHU")
    parsing, release = threading.Event(), threading.Event()
    real = routes.parse_message_bundle

    def held_parse(*args: Any, **kwargs: Any) -> Any:
        # Stands for the seconds of CPU a huge Bundle costs, made deterministic: parsing holds until released.
        parsing.set()
        release.wait(60)
        return real(*args, **kwargs)

    monkeypatch.setattr(routes, "parse_message_bundle", held_parse)
    body = f.body(_large(message(), 600))
    assert 200_000 < len(body) < 1_000_000
    answers: list[int] = []
    try:
        with live_server(service.app) as port:
            base = f"http://127.0.0.1:{port}"

            def post() -> None:
                headers = {**FHIR, "Authorization": f"Bearer {token}"}
                answers.append(httpx.post(base + path, content=body, headers=headers, timeout=90).status_code)

            poster = threading.Thread(target=post)
            poster.start()
            assert parsing.wait(30)
            # On the event loop, the held parse would hold this too: the request would time out.
            health = httpx.get(f"{base}/{path.split('/')[1]}/healthz", timeout=10)
            still_parsing = not release.is_set() and poster.is_alive()
            release.set()
            poster.join(90)
        assert health.status_code == 200 and still_parsing
        assert answers and answers[0] < 500
    finally:
        release.set()
        service.runtime.close()


# --- discharge: plans, timers, retention ----------------------------------------------------------------


def _prepare(harness) -> None:
    harness.territory()
    harness.careteam()


def _timers(harness) -> list[tuple[str, str | None]]:
    with harness.service.runtime.engine.connect() as connection:
        rows = connection.execute(select(TimerRow.kind, TimerRow.outcome).order_by(TimerRow.due_at)).all()
    return [(str(kind), outcome) for kind, outcome in rows]


def test_a_plan_over_the_cap_is_refused_and_stores_nothing(harness):
    _prepare(harness)
    plan = tuple((f"item-{i}", f"Suivi {i}", 24.0 * (i + 1)) for i in range(51))  # the default cap is 50
    response = harness.post_message(f.full_discharge_message(plan=plan))
    assert response.status_code == 422 and response.json()["resourceType"] == "OperationOutcome"
    assert _timers(harness) == []
    assert harness.post_message(f.full_discharge_message(plan=plan[:50])).status_code == 200


def test_one_timer_with_a_permanent_database_error_is_set_aside_and_the_others_fire(harness, monkeypatch):
    _prepare(harness)
    plan = (("gp-visit", "Consultation", 72.0), ("nurse", "Passage infirmier", 96.0))
    assert harness.post_message(f.full_discharge_message(plan=plan)).status_code == 200

    def poisoned(*args: Any, **kwargs: Any) -> bool:
        # The handoff expiry (due first, at 48 h) meets a value the database refuses, on every retry.
        raise DataError("UPDATE discharge_handoff", {}, Exception("value too long for type character varying"))

    monkeypatch.setitem(timer_handlers.EFFECTS, TimerKind.HANDOFF_EXPIRY, poisoned)
    harness.clock.advance(hours=100)
    assert harness.fire() == 2
    outcomes = _timers(harness)
    assert (str(TimerKind.HANDOFF_EXPIRY), "error") in outcomes
    assert [o for k, o in outcomes if k == str(TimerKind.FOLLOWUP_MISSED)][:2] == ["fired", "fired"]


def test_fired_timers_are_purged_after_their_retention_and_pending_ones_kept(harness):
    _prepare(harness)
    plan = (("gp-visit", "Consultation", 72.0), ("nurse", "Passage infirmier", 2400.0))
    assert harness.post_message(f.full_discharge_message(plan=plan)).status_code == 200
    harness.clock.advance(hours=100)
    assert harness.fire() >= 1
    before = _timers(harness)
    settings = harness.service.runtime.settings
    later = harness.clock() + timedelta(days=settings.retention_timers_days + 1)
    deleted = purge(harness.service.runtime.engine, discharge_rules(settings), now=later)
    after = _timers(harness)
    assert deleted["discharge_timer"] == sum(1 for _, o in before if o is not None) > 0
    assert after and all(outcome is None for _, outcome in after)


def test_delivered_deliveries_and_old_notifications_are_purged_pending_ones_kept(tmp_path):
    receiver = Receiver()
    settings = NotificationsSettings(environment="test", data_dir=tmp_path, outbound_allowed_networks=["127.0.0.0/8"],
                                     outbound_allow_http=True)
    service = notifications_bootstrap(settings, run_workers=False, transport=httpx.MockTransport(receiver))
    try:
        api = TestClient(service.app)
        token = {"Authorization": f"Bearer {service.runtime.directory.add('team', 'msp-1', 'MSP')}"}
        assert api.post("/notifications/webhooks", json={"url": "http://127.0.0.1:9/ok"},
                        headers=token).status_code == 201
        publish(service, "msp-1", 2)
        while service.app.state.dispatcher.run_due():  # one per target per call: in order
            pass
        publish(service, "msp-1", 1)  # queued, never attempted: must survive the purge
        engine = service.runtime.engine
        later = datetime.now(UTC) + timedelta(days=max(settings.retention_deliveries_days,
                                                        settings.retention_notifications_days) + 1)
        deleted = purge(engine, notification_rules(settings), now=later)
        with engine.connect() as connection:
            states = [r[0] for r in connection.execute(text("SELECT state FROM notifications_delivery"))]
            notifications = connection.execute(text("SELECT count(*) FROM notifications_notification")).scalar()
        assert deleted["delivered"] == 2 and states == ["pending"]
        assert deleted["notifications"] == 3 and notifications == 0
    finally:
        service.runtime.close()


def test_an_envelope_the_bus_could_never_carry_is_refused_at_intake_with_an_outcome(tmp_path):
    service = admissions_bootstrap(
        AdmissionsSettings(environment="test", data_dir=tmp_path, bus_max_message_bytes=1000), run_workers=False
    )
    try:
        token = service.runtime.directory.add("hospital", f.DEFAULT_FINESS, "CHU")
        team = service.runtime.directory.add("team", "msp-x", "MSP")
        client = TestClient(service.app)
        # With a treating team, the admission carries the whole message to it: far over 1000 bytes.
        enrolled = client.post("/admissions/fhir/CareTeam", json=f.careteam_resource(),
                               headers={**FHIR, "Authorization": f"Bearer {team}"})
        assert enrolled.status_code == 202, enrolled.text  # the patient had no team: enrolled at once
        response = client.post(
            "/admissions/fhir/$process-message", content=f.body(f.admission_message()),
            headers={**FHIR, "Authorization": f"Bearer {token}"},
        )
        assert response.status_code == 422 and response.json()["resourceType"] == "OperationOutcome"
        with service.runtime.engine.connect() as connection:
            topics = [row[0] for row in connection.execute(text("SELECT topic FROM outbox"))]
        assert "relais.notify.team" not in topics and "relais.admissions" not in topics
    finally:
        service.runtime.close()
