"""Canary test of the patient-data boundary (issue 11): distinctive strings planted in every free-text and
identifier field of admissions, corrections, discharges, SNP requests and care teams must reach no minimised or
organisational recipient by any channel (feed, webhook, subscription, notify record value and key, dashboard),
and no log line at any level.

Every service runs in one process (as `relais run`) on SQLite and the embedded log, workers on.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from relais.combined import combined_app
from relais.services import SERVICE_NAMES, bootstrapper
from services.snp import domain as snp_domain
from shared.auth import Directory
from shared.events import RELAIS_EVENT_SYSTEM, Role
from shared.identifiers import INS_NIR, make_nir
from shared.logs import install_log_policy
from tests import factories as f
from tests.infra.wait import wait_for

pytestmark = pytest.mark.attack

HOSPITAL, TEAM, CPTS, DAC, SAS = f.DEFAULT_FINESS, "msp-canary", "cpts-88", "dac-88", "sas-88"
POSTAL = "88800"  # Vittel, INSEE 88516
NIR_A = make_nir(2, 51, 4, "88", 516, 131)
NIR_B = make_nir(1, 47, 9, "88", 516, 207)
NIR_SNP = make_nir(1, 80, 5, "88", 516, 12)
BIRTH = "1951-04-17"
HOOK = "http://127.0.0.1:9/hook"  # never reached: the queued delivery bodies are what would leave
DEADLINE_SECONDS = 60.0

# Each canary names the field it was planted in, so a failure says which field leaked.
CANARIES = {
    name: f"QZX{name.upper().replace('-', '')}QZX"
    for name in (
        "family", "given", "name-text", "city", "line", "nda", "ipp", "condition-display", "condition-text",
        "referent-name", "referent-phone", "revise-family", "revise-condition", "letter", "careplan-note",
        "discharge-family", "snp-reason", "snp-note", "snp-identifier", "careteam-name", "careteam-member",
        "encounter-text",
    )
}
IDENTIFIERS = (NIR_A, NIR_B, NIR_SNP, BIRTH)


def _resources(bundle: dict, kind: str) -> list[dict]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == kind]


def _plant(bundle: dict, prefix: str = "") -> dict:
    """Canaries in the patient's names, address, identifiers, the encounter, conditions and the referent."""
    c = CANARIES
    (patient,) = _resources(bundle, "Patient")
    patient["name"] = [{"family": c[prefix + "family"] if prefix else c["family"], "given": [c["given"]],
                        "text": c["name-text"]}]
    patient["address"] = [{"use": "home", "line": [c["line"]], "city": f"Jean DUPONT {c['city']}",
                           "postalCode": POSTAL, "country": "FR"}]
    patient["identifier"].append({"system": "urn:oid:1.2.250.1.999.1.1", "value": c["ipp"]})
    patient["birthDate"] = BIRTH
    (encounter,) = _resources(bundle, "Encounter")
    encounter["identifier"][0]["value"] = c["nda"]
    encounter["reasonCode"] = [{"text": c["encounter-text"]}]
    for condition in _resources(bundle, "Condition"):
        condition["code"]["coding"][0]["display"] = c["condition-display"]
        condition["code"]["text"] = c["condition-text"] if not prefix else c["revise-condition"]
    for practitioner in _resources(bundle, "Practitioner"):
        practitioner["name"] = [{"text": c["referent-name"]}]
    for role in _resources(bundle, "PractitionerRole"):
        role["telecom"] = [{"system": "phone", "value": c["referent-phone"]}]
    for letter in _resources(bundle, "DocumentReference"):
        letter["description"] = c["letter"]
    for plan in _resources(bundle, "CarePlan"):
        plan["note"] = [{"text": c["careplan-note"]}]
    return bundle


@pytest.fixture
def relais(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("RELAIS_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("RELAIS_ENVIRONMENT", "test")
    # Webhooks and subscriptions aim at a closed loopback port: allowed explicitly, as in local development.
    monkeypatch.setenv("RELAIS_OUTBOUND_ALLOWED_NETWORKS", "127.0.0.0/8")
    monkeypatch.setenv("RELAIS_OUTBOUND_ALLOW_HTTP", "true")
    install_log_policy()
    caplog.set_level(logging.DEBUG)
    directory = Directory(f"sqlite:///{tmp_path / 'auth.sqlite'}")
    tokens = {
        org: directory.add(role, org, org)
        for role, org in (
            (Role.HOSPITAL, HOSPITAL), (Role.TEAM, TEAM), (Role.CPTS, CPTS), (Role.DAC, DAC), (Role.SAS, SAS),
            (Role.ADMIN, "admin"), (Role.TEAM, "gp-vittel"),
        )
    }
    services = [bootstrapper(name)(directory=directory) for name in SERVICE_NAMES]
    with TestClient(combined_app(services)) as client:
        yield client, tokens, services, tmp_path
    for service in services:
        service.runtime.close()
    directory.close()


def _auth(tokens: dict[str, str], org: str, fhir: bool = True) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {tokens[org]}"}
    return {**headers, "Content-Type": "application/fhir+json"} if fhir else headers


def _poll(check: Callable[[], Any], what: str) -> Any:
    return wait_for(check, DEADLINE_SECONDS, 0.1, what)


def _leaks(text_: str) -> list[str]:
    return [name for name, canary in CANARIES.items() if canary in text_] + [v for v in IDENTIFIERS if v in text_]


def _rows(path, query: str) -> list[Any]:
    engine = create_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as connection:
            return list(connection.execute(text(query)))
    finally:
        engine.dispose()


def test_no_canary_leaves_the_care_team_by_any_channel_nor_reaches_a_log(relais, caplog):
    client, tokens, services, data_dir = relais
    post: Callable[..., Any] = client.post

    # The territory, and the CPTS's webhook and subscription (their queued bodies are what would be sent).
    assert client.put(f"/admissions/territories/{POSTAL}", json={"cpts": CPTS, "dac": DAC},
                      headers=_auth(tokens, "admin", False)).status_code == 200
    assert post("/notifications/webhooks", json={"url": HOOK}, headers=_auth(tokens, CPTS, False)).status_code == 201
    for topic in ("admission", "discharge", "snp"):
        subscription = {
            "resourceType": "Subscription", "status": "requested", "reason": "canary",
            "criteria": f"https://relais.example.org/fhir/SubscriptionTopic/{topic}",
            "channel": {"type": "rest-hook", "endpoint": HOOK, "payload": "application/fhir+json",
                        "_payload": {"extension": [{
                            "url": "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
                                   "backport-payload-content", "valueCode": "full-resource"}]}},
        }
        created = post("/notifications/fhir/Subscription", json=subscription, headers=_auth(tokens, CPTS))
        assert created.status_code == 201, created.text

    # Patient A has no team: the admission, its correction and the discharge reach the CPTS (minimised).
    admission = _plant(f.admission_message(nir=NIR_A, nir_system=INS_NIR, conditions=[("E11", "x")]))
    response = post("/admissions/fhir/$process-message", content=f.body(admission), headers=_auth(tokens, HOSPITAL))
    assert response.status_code == 200, response.text
    revise = _plant(f.admission_message(nir=NIR_A, nir_system=INS_NIR, conditions=[("E11", "x")],
                                        event=(RELAIS_EVENT_SYSTEM, "revise-admit")), prefix="revise-")
    response = post("/admissions/fhir/$process-message", content=f.body(revise), headers=_auth(tokens, HOSPITAL))
    assert response.status_code == 200, response.text
    discharge = _plant(f.full_discharge_message(nir=NIR_A, nir_system=INS_NIR,
                                                conditions=[("S52", "x")], nda=CANARIES["nda"]))
    response = post("/discharge/fhir/$process-message", content=f.body(discharge), headers=_auth(tokens, HOSPITAL))
    assert response.status_code == 200, response.text
    revised = _plant(f.full_discharge_message(nir=NIR_A, nir_system=INS_NIR, conditions=[("S52", "x")],
                                              event=(RELAIS_EVENT_SYSTEM, "revise-discharge"),
                                              nda=CANARIES["nda"]), prefix="discharge-")
    response = post("/discharge/fhir/$process-message", content=f.body(revised), headers=_auth(tokens, HOSPITAL))
    assert response.status_code == 200, response.text

    # Patient B is enrolled by a team whose CareTeam carries canaries; the SAS asks for an SNP slot.
    careteam = f.careteam_resource(nir=NIR_B, nir_system=INS_NIR, referent_name=CANARIES["careteam-member"])
    careteam["name"] = CANARIES["careteam-name"]
    assert post("/admissions/fhir/CareTeam", content=json.dumps(careteam),
                headers=_auth(tokens, TEAM)).status_code == 202
    snp_request = {
        "resourceType": "ServiceRequest", "status": "active", "intent": "order",
        "identifier": [{"value": CANARIES["snp-identifier"]}],
        "category": [{"coding": [{"system": snp_domain.URGENCY_SYSTEM, "code": "same-day"}]}],
        "reasonCode": [{"coding": [{"system": snp_domain.REASON_SYSTEM, "code": "fever"}],
                        "text": CANARIES["snp-reason"]}],
        "note": [{"text": CANARIES["snp-note"]}],
        "subject": {"identifier": {"system": INS_NIR, "value": NIR_SNP}},
        "locationCode": [{"coding": [{"system": snp_domain.INSEE_COMMUNE_SYSTEM, "code": "88516"}]}],
    }
    response = post("/snp/fhir/ServiceRequest", json=snp_request, headers=_auth(tokens, SAS, False))
    assert response.status_code in (200, 201), response.text

    # The CPTS's feed: wait until the admission, its correction and the discharge have arrived.
    def cpts_feed() -> dict | None:
        feed = client.get("/notifications/feed?limit=200", headers=_auth(tokens, CPTS, False)).json()
        return feed if len(feed.get("entry", [])) >= 3 else None

    feed = _poll(cpts_feed, "the CPTS's notifications")
    channels: dict[str, str] = {"cpts feed": json.dumps(feed, ensure_ascii=False)}
    dac_feed = client.get("/notifications/feed?limit=200", headers=_auth(tokens, DAC, False)).json()
    # A complex discharge would go to the DAC in full (routing table): this one is not complex.
    channels["dac feed"] = json.dumps(dac_feed, ensure_ascii=False)

    # Notify records beyond full detail: value and key, on the embedded log.
    notify = _rows(_bus_file(data_dir), "select topic, key, value from bus_log where topic like 'relais.notify.%'")
    outside = [r for r in notify if json.loads(r.value).get("data", {}).get("detail") != "full"]
    assert any(r.topic == "relais.notify.cpts" for r in outside)
    channels["notify records"] = "\n".join(f"{r.key} {bytes(r.value).decode()}" for r in outside)

    # What the CPTS's webhook and subscriptions would be sent.
    notifications_db = _service_db(services, "notifications")
    bodies = _rows(notifications_db, f"select target_kind, body from notifications_delivery where org_id = '{CPTS}'")
    assert {r.target_kind for r in bodies} >= {"webhook", "subscription"}
    channels["deliveries"] = "\n".join(r.body for r in bodies)

    dashboard = client.get("/snp/dashboard", headers=_auth(tokens, CPTS, False))
    assert dashboard.status_code == 200, dashboard.text
    channels["dashboard"] = dashboard.text

    for channel, content in channels.items():
        assert _leaks(content) == [], f"{channel} carries patient data"
    # And no log line, at any level, carries any of it (the care team's own copy included).
    assert caplog.records, "the services logged nothing at DEBUG: the log check would be vacuous"
    assert _leaks(caplog.text) == []
    assert _leaks("\n".join(str(r.__dict__) for r in caplog.records)) == []


def _bus_file(data_dir) -> Any:
    candidates = [p for p in data_dir.rglob("*.sqlite") if _has_table(p, "bus_log")]
    assert candidates, "no embedded log found"
    return candidates[0]


def _has_table(path, name: str) -> bool:
    return bool(_rows(path, f"select name from sqlite_master where type='table' and name='{name}'"))


def _service_db(services, name: str) -> Any:
    (service,) = [s for s in services if s.runtime.name == name]
    url = service.runtime.settings.resolved_database_url
    return url.removeprefix("sqlite:///")

