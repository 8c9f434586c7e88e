"""An A01 and an A03 over MLLP reach the team, the CPTS and the DAC exactly as the FHIR door's messages for the
same facts do: two Relais, one fed PAM France messages over MLLP, the other the FHIR messages a hospital would
post for the same stays; the three organisations' feeds are compared item by item."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from relais.combined import combined_app
from services.notifications.bootstrap import bootstrap as notifications_bootstrap
from shared.events import Role
from shared.identifiers import make_nir
from shared.settings import NotificationsSettings
from tests import factories as f
from tests.hl7_support import SECRET, MllpClient, msa, pam_message, started_relais
from tests.infra.wait import wait_for

TEAM, CPTS, DAC = "msp-hl7", "cpts-hl7", "dac-hl7"
NO_TEAM_NIR = make_nir(1, 60, 7, "75", 56, 12)
NDA_SYSTEM = "urn:oid:1.2.250.1.71.4.2.2"  # the AN authority of the fixtures' PID-18
STAYS = {f.DEFAULT_NIR: "NDA-TEAM-1", NO_TEAM_NIR: "NDA-ALONE-1"}
ADMITTED, DISCHARGED = "20240502083000", "20240509110000"
ADMITTED_ISO, DISCHARGED_ISO = "2024-05-02T08:30:00+02:00", "2024-05-09T11:00:00+02:00"


@dataclass
class Running:
    client: TestClient
    tokens: dict[str, str]
    port: int

    def call(self, method: str, path: str, who: str, body: Any = None) -> Any:
        headers = {"Authorization": f"Bearer {self.tokens[who]}", "Content-Type": "application/fhir+json"}
        content = None if body is None else json.dumps(body)
        return self.client.request(method, path, content=content, headers=headers)

    def feed(self, who: str) -> list[dict[str, Any]]:
        answer = self.call("GET", "/notifications/feed", who)
        return [entry["resource"] for entry in answer.json().get("entry", [])]


@contextmanager
def relais(workdir: Path) -> Iterator[Running]:
    from shared.auth import Directory

    settings = NotificationsSettings(environment="test", data_dir=workdir, secret_key=SECRET)
    directory_path = workdir / "auth.sqlite"
    notifications = notifications_bootstrap(settings, directory=Directory(f"sqlite:///{directory_path}"))
    with started_relais(workdir, extra=[notifications]) as running:
        directory = running.directory
        tokens = dict(running.tokens)
        tokens |= {TEAM: directory.add(Role.TEAM, TEAM, "MSP"), CPTS: directory.add(Role.CPTS, CPTS, "CPTS")}
        tokens |= {DAC: directory.add(Role.DAC, DAC, "DAC"), "admin": directory.add(Role.ADMIN, "admin", "Admin")}
        for service in running.services:
            service.runtime.run_workers = True
        with TestClient(combined_app(running.services)) as client:
            yield Running(client, tokens, running.port)


def _prepare(r: Running) -> None:
    assert r.call("PUT", "/admissions/territories/75014", "admin", {"cpts": CPTS, "dac": DAC}).status_code == 200
    enrolled = r.call("POST", "/admissions/fhir/CareTeam", TEAM, f.careteam_resource(postal_code="75014"))
    assert enrolled.status_code == 202, enrolled.text
    referral = {"patient": {"system": f.INS_NIR_TEST, "value": f.DEFAULT_NIR}, "dac": DAC}
    referred = r.call("POST", "/admissions/dac-cases", TEAM, referral)
    assert referred.status_code == 201, referred.text


def _fhir_message(nir: str, discharge: bool) -> dict[str, Any]:
    build = f.discharge_message if discharge else f.admission_message
    extra = {"end": DISCHARGED_ISO} if discharge else {}
    message = build(
        nir=nir, start=ADMITTED_ISO, include_referent=False, postal_code="75014", **extra
    )
    encounter = message["entry"][1]["resource"]
    encounter["identifier"] = [{"system": NDA_SYSTEM, "value": STAYS[nir]}]
    if discharge:
        encounter["hospitalization"] = {"dischargeDisposition": {"text": "non précisé (HL7 v2)"}}
    return message


def _v2_message(nir: str, discharge: bool) -> bytes:
    trigger = "A03" if discharge else "A01"
    text = pam_message(trigger, f"{trigger}-{nir}", nir=nir, nda=STAYS[nir], admitted=ADMITTED,
                       discharged=DISCHARGED if discharge else "")
    return text.encode("utf-8")


def _comparable(item: dict[str, Any]) -> dict[str, Any]:
    """A feed item without what differs per delivery (ids, cursors, times) or per sender (bundle ids)."""
    params = {p["name"]: p for p in item["parameter"]}
    kept = {name: params[name] for name in ("event", "role", "detail", "recipient", "sender", "patient-key")
            if name in params}
    payload = copy.deepcopy(params.get("payload", {}).get("resource"))
    if payload and payload.get("resourceType") == "Bundle":
        kept["focus"] = [e["resource"] for e in payload.get("entry", [])
                         if e.get("resource", {}).get("resourceType") in ("Encounter", "Task")]
        for resource in kept["focus"]:
            for name in ("id", "meta", "subject", "serviceProvider", "for", "focus", "authoredOn", "lastModified",
                         "restriction", "input", "partOf", "identifier" if resource["resourceType"] == "Task" else "_"):
                resource.pop(name, None)
    elif payload is not None:
        kept["payload"] = {k: v for k, v in payload.items() if k not in ("id", "meta", "timestamp")}
    return kept


def _feeds(r: Running, count: dict[str, int]) -> dict[str, list[dict[str, Any]]]:
    for who, n in count.items():
        wait_for(lambda who=who, n=n: len(r.feed(who)) >= n, 30, 0.1, f"{n} notifications for {who}")
    return {who: [_comparable(item) for item in r.feed(who)] for who in count}


def test_an_a01_and_an_a03_over_mllp_reach_team_cpts_and_dac_as_the_fhir_messages_do(tmp_path):
    expected = {TEAM: 3, CPTS: 3, DAC: 2}
    with relais(tmp_path / "v2") as over_mllp:
        _prepare(over_mllp)
        client = MllpClient(over_mllp.port)
        for discharge in (False, True):
            for nir in STAYS:
                assert msa(client.exchange(_v2_message(nir, discharge)))[1] == "AA"
        client.close()
        from_v2 = _feeds(over_mllp, expected)
    with relais(tmp_path / "fhir") as over_fhir:
        _prepare(over_fhir)
        for discharge in (False, True):
            path = "/discharge/fhir/$process-message" if discharge else "/admissions/fhir/$process-message"
            for nir in STAYS:
                answer = over_fhir.call("POST", path, "hospital", _fhir_message(nir, discharge))
                assert answer.status_code == 200, answer.text
        from_fhir = _feeds(over_fhir, expected)
    for who in expected:
        assert from_v2[who] == from_fhir[who], who
    assert {who: [item["event"]["valueCode"] for item in items] for who, items in from_v2.items()} == {
        TEAM: ["admission.recorded", "discharge.recorded", "handoff.proposed"],
        CPTS: ["admission.recorded", "discharge.recorded", "orientation.requested"],
        DAC: ["admission.recorded", "discharge.recorded"],
    }

