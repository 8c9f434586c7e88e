"""The disclosure log: for a patient, which organisation received which event, at which detail, how and when."""

# ruff: noqa: F811 - the notifications service fixtures are reused by name

from __future__ import annotations

from typer.testing import CliRunner

from shared.identifiers import INS_NIR, INS_NIR_TEST, make_nir, patient_key
from tests.unit.test_notifications_service import (  # noqa: F401 - fixtures
    client,
    publish,
    receiver,
    register,
    service,
    token,
)

NIR = make_nir(2, 48, 2, "88", 516, 77)


def _key(service, system=INS_NIR) -> str:
    return patient_key(system, NIR, service.runtime.settings.secret_key)


def test_stored_read_and_delivered_notifications_are_listed_for_the_patient(service, client, receiver):
    key = _key(service)
    msp = token(service, "team", "msp-1")
    register(client, msp)
    (team_id,) = publish(service, "msp-1", patient_key=key)
    publish(service, "cpts-88", topic="relais.notify.cpts", detail="minimised", event="admission.recorded",
            patient_key=key)
    publish(service, "msp-1", patient_key="someone-else")
    service.app.state.dispatcher.run_due()
    assert client.get("/notifications/feed", headers=msp).status_code == 200
    client.get("/notifications/feed", headers=msp)  # a second read adds nothing

    admin = token(service, "admin", "admin")
    # The INS family is one person: asking under the test OID finds the same log.
    response = client.get("/notifications/disclosures", params={"patient": f"{INS_NIR_TEST}|{NIR}"}, headers=admin)
    assert response.status_code == 200, response.text
    body = response.json()
    assert NIR not in response.text and body["patient_key"] == key
    seen = {(d["organisation"], d["event"], d["detail"], d["channel"]) for d in body["disclosures"]}
    assert seen == {
        ("msp-1", "discharge.recorded", "full", "relais.notify.team"),
        ("msp-1", "discharge.recorded", "full", "webhook"),
        ("msp-1", "discharge.recorded", "full", "feed"),
        ("cpts-88", "admission.recorded", "minimised", "relais.notify.cpts"),
    }
    assert all(d["at"] for d in body["disclosures"])
    assert {d["notification"] for d in body["disclosures"] if d["organisation"] == "msp-1"} == {team_id}


def test_only_an_administrator_reads_the_disclosure_log(service, client):
    publish(service, "msp-1", patient_key=_key(service))
    for role, org in (("team", "msp-1"), ("cpts", "cpts-88"), ("hospital", "750712184"), ("dac", "dac-88")):
        response = client.get(
            "/notifications/disclosures", params={"patient": f"{INS_NIR}|{NIR}"}, headers=token(service, role, org)
        )
        assert response.status_code == 403
        assert NIR not in response.text


def test_the_cli_lists_the_disclosures_of_a_patient(service, monkeypatch, tmp_path):
    from relais.cli import app

    publish(service, "msp-1", patient_key=_key(service))
    monkeypatch.setenv("RELAIS_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("RELAIS_ENVIRONMENT", "test")
    monkeypatch.setenv("COLUMNS", "250")
    result = CliRunner().invoke(app, ["disclosures", "--patient", f"{INS_NIR}|{NIR}"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "1 disclosure(s)" in result.output and "msp-1" in result.output and "relais.notify.team" in result.output
    assert NIR not in result.output
