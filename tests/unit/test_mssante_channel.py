"""The MSSanté channel without servers: registering an address, who gets a mail queued, the mail's content,
receipts matched to their mail, hostile values. The real SMTP/IMAP exchange is tests/integration/test_mssante.py."""

from __future__ import annotations

import io
import json
import time
import zipfile
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from lxml import etree
from sqlalchemy import select

from services.notifications.adapters.orm import DeliveryRow, NotificationRow
from services.notifications.bootstrap import bootstrap
from services.notifications.mssante.channel import mail_body
from services.notifications.mssante.letter import MAX_TEXT, read_letter
from services.notifications.mssante.message import build_mail, message_id
from services.notifications.mssante.orm import MailReceiptRow
from services.notifications.mssante.receipts import RecordMailReceipt, parse_report
from services.notifications.mssante.transport import MailSettingsError
from services.notifications.mssante.xdm import RIM, ZIP_NAME
from shared.settings import NotificationsSettings
from tests import factories as f
from tests.mail_factories import dsn, mdn
from tests.unit.test_notifications_service import publish, token

TEAM_ADDRESS = "secretariat@msp-lilas.mssante.fr"
RELAIS = "relais@relais.mssante.fr"


@pytest.fixture
def service(tmp_path):
    settings = NotificationsSettings(
        environment="test", data_dir=tmp_path, mssante_smtp_url="smtps://127.0.0.1:9", mssante_sender=RELAIS,
    )
    svc = bootstrap(settings, run_workers=False)
    yield svc
    svc.runtime.close()


@pytest.fixture
def client(service):
    return TestClient(service.app)


def mail_deliveries(service) -> list[DeliveryRow]:
    with service.runtime.sessions() as session:
        query = select(DeliveryRow).where(DeliveryRow.target_kind == "mssante")
        return list(session.execute(query).scalars())


def notification(service, notification_id: str) -> NotificationRow:
    with service.runtime.sessions() as session:
        return session.execute(select(NotificationRow).where(NotificationRow.id == notification_id)).scalar_one()


# --- registering -------------------------------------------------------------------------------------


def test_a_team_sets_reads_and_removes_its_address(service, client):
    team = token(service, "team", "msp-lilas")
    answer = client.put("/notifications/mssante", json={"address": "Secretariat@MSP-Lilas.mssante.fr"}, headers=team)
    assert answer.status_code == 200, answer.text
    assert answer.json()["address"] == TEAM_ADDRESS
    assert answer.json()["events"] == ["discharge.recorded", "handoff.proposed", "admission.recorded"]
    assert service.runtime.directory.mssante_address("msp-lilas") == TEAM_ADDRESS
    chosen = client.put("/notifications/mssante", json={"address": TEAM_ADDRESS, "events": ["discharge.recorded"]},
                        headers=team)
    assert chosen.json()["events"] == ["discharge.recorded"]
    assert client.get("/notifications/mssante", headers=team).json()["events"] == ["discharge.recorded"]
    assert client.delete("/notifications/mssante", headers=team).status_code == 204
    assert client.get("/notifications/mssante", headers=team).json()["address"] is None
    assert service.runtime.directory.mssante_address("msp-lilas") is None


@pytest.mark.attack
@pytest.mark.parametrize("address", [
    "someone@gmail.com",                      # outside the MSSanté domains
    "x@mssante.fr.evil.com",                  # a lookalike domain
    "msp@lilas.mssante.fr\r\nBcc: a@b.fr",    # header injection
    "Dr X <msp@lilas.mssante.fr>",            # a display name
    "a" * 300 + "@lilas.mssante.fr",          # too long
])
def test_an_address_outside_the_rules_is_refused_with_an_outcome_that_never_repeats_it(service, client, address):
    team = token(service, "team", "msp-lilas")
    answer = client.put("/notifications/mssante", json={"address": address}, headers=team)
    assert answer.status_code == 422
    body = answer.json()
    assert body["resourceType"] == "OperationOutcome"
    assert address not in answer.text and "gmail" not in answer.text and "evil" not in answer.text
    assert service.runtime.directory.mssante_address("msp-lilas") is None


@pytest.mark.attack
@pytest.mark.parametrize("address", ["a" * 10_000_000 + "@lilas.mssante.fr", 12, None, ["x@lilas.mssante.fr"]])
def test_a_huge_or_malformed_address_is_refused_without_a_server_error(service, client, address):
    team = token(service, "team", "msp-lilas")
    answer = client.put("/notifications/mssante", json={"address": address}, headers=team)
    assert answer.status_code in (413, 422) and answer.json()["resourceType"] == "OperationOutcome"
    assert service.runtime.directory.mssante_address("msp-lilas") is None


@pytest.mark.attack
@pytest.mark.parametrize("role", ["cpts", "dac", "hospital"])
def test_no_other_role_registers_a_mailbox_for_patient_mail(service, client, role):
    caller = token(service, role, f"{role}-1")
    answer = client.put("/notifications/mssante", json={"address": "coord@cpts.mssante.fr"}, headers=caller)
    assert answer.status_code == 403 and answer.json()["resourceType"] == "OperationOutcome"
    assert client.get("/notifications/mssante", headers=caller).status_code == 403
    assert service.runtime.directory.mssante_address(f"{role}-1") is None


def test_events_outside_the_choices_are_refused(service, client):
    team = token(service, "team", "msp-lilas")
    answer = client.put("/notifications/mssante", json={"address": TEAM_ADDRESS, "events": ["snp.requested"]},
                        headers=team)
    assert answer.status_code == 422


# --- who gets a mail ---------------------------------------------------------------------------------


def test_a_full_team_notification_queues_one_mail_whatever_the_repeats(service):
    service.runtime.directory.add("team", "msp-lilas", "MSP des Lilas", mssante=TEAM_ADDRESS)
    (sent,) = publish(service, "msp-lilas", ids=["n-1"])
    publish(service, "msp-lilas", ids=["n-1"])  # the same envelope again (a redelivered record)
    (row,) = mail_deliveries(service)
    assert row.notification_id == sent and row.url == f"mailto:{TEAM_ADDRESS}" and row.state == "pending"


@pytest.mark.attack
def test_minimised_recipients_never_get_a_mail_even_with_an_address(service):
    directory = service.runtime.directory
    directory.add("cpts", "cpts-88", "CPTS", mssante="coord@cpts88.mssante.fr")
    directory.add("dac", "dac-88", "DAC", mssante="appui@dac88.mssante.fr")
    publish(service, "cpts-88", topic="relais.notify.cpts", detail="minimised")
    publish(service, "dac-88", topic="relais.notify.dac", detail="minimised")
    publish(service, "dac-88", topic="relais.notify.dac", detail="full")  # even a DAC's full case: team only
    assert mail_deliveries(service) == []


def test_an_event_the_team_did_not_choose_sends_no_mail(service, client):
    team = token(service, "team", "msp-lilas")
    client.put("/notifications/mssante", json={"address": TEAM_ADDRESS, "events": ["handoff.proposed"]}, headers=team)
    publish(service, "msp-lilas", event="discharge.recorded")
    assert mail_deliveries(service) == []
    publish(service, "msp-lilas", event="handoff.proposed")
    assert len(mail_deliveries(service)) == 1


# --- the mail ---------------------------------------------------------------------------------------


def discharge_body(**changes) -> dict:
    bundle = f.full_discharge_message()
    for entry in bundle["entry"]:
        resource = entry["resource"]
        for key, value in changes.get(resource["resourceType"], {}).items():
            resource[key] = value
    return {"id": "n-42", "event": "discharge.recorded", "detail": "full", "sent_at": "2024-05-09T10:00:00Z",
            "payload": bundle}


def test_the_mail_carries_a_readable_letter_and_an_xdm_zip_naming_the_patient_by_ins():
    mail = build_mail(read_letter(discharge_body()), sender=RELAIS, recipient=TEAM_ADDRESS)
    assert mail["Message-ID"] == message_id("n-42", TEAM_ADDRESS, RELAIS)
    assert mail["Disposition-Notification-To"] == RELAIS
    assert "Sortie d'hospitalisation" in mail["Subject"] and "MARTIN" not in mail["Subject"]
    text = mail.get_body(("plain",)).get_content()
    assert "MARTIN Jeanne" in text and f.DEFAULT_NIR in text and "CHU Exemple" in text
    (attachment,) = mail.iter_attachments()
    assert attachment.get_filename() == ZIP_NAME
    archive = zipfile.ZipFile(io.BytesIO(attachment.get_content()))
    assert {"INDEX.HTM", "README.TXT", "IHE_XDM/SUBSET01/METADATA.XML"} <= set(archive.namelist())
    metadata = etree.fromstring(archive.read("IHE_XDM/SUBSET01/METADATA.XML"))
    values = metadata.xpath("//rim:Slot[@name='sourcePatientId']/rim:ValueList/rim:Value/text()",
                            namespaces={"rim": RIM})
    assert values and all(v.startswith(f.DEFAULT_NIR + "^^^&") for v in values)
    assert archive.read("IHE_XDM/SUBSET01/DOC0002.PDF").startswith(b"%PDF")


@pytest.mark.attack
def test_cr_lf_in_names_never_reach_a_header():
    hostile = "CHU\r\nBcc: leak@evil.example\r\nX-Injected: 1"
    body = discharge_body(Organization={"name": hostile}, Patient={"name": [{"family": "A\r\nBcc: x@evil.fr"}]})
    raw = build_mail(read_letter(body), sender=RELAIS, recipient=TEAM_ADDRESS).as_bytes()
    parsed = message_from_bytes(raw, policy=policy.default)
    assert parsed["Bcc"] is None and parsed["X-Injected"] is None
    assert parsed.get_all("To") == [TEAM_ADDRESS]


@pytest.mark.attack
def test_a_ten_megabyte_name_is_cut_and_the_mail_stays_small():
    started = time.monotonic()
    body = discharge_body(Patient={"name": [{"family": "X" * 10_000_000}]})
    letter = read_letter(body)
    assert len(letter.family) <= MAX_TEXT
    raw = build_mail(letter, sender=RELAIS, recipient=TEAM_ADDRESS).as_bytes()
    assert len(raw) < 100_000 and time.monotonic() - started < 10


def test_a_strange_bundle_still_gives_a_letter():
    letter = read_letter({"id": "n-1", "event": "discharge.recorded", "payload": {"entry": [None, {"x": 1}, 3]}})
    assert letter.patient_name == "Patient" and letter.followups == ()
    assert build_mail(letter, sender=RELAIS, recipient=TEAM_ADDRESS)["Message-ID"]


# --- receipts ---------------------------------------------------------------------------------------


def test_an_mdn_marks_the_notification_read_and_a_dsn_makes_the_mail_a_dead_letter(service):
    service.runtime.directory.add("team", "msp-lilas", "MSP des Lilas", mssante=TEAM_ADDRESS)
    bus = service.app.state.messagebus
    read_id, bounced_id = publish(service, "msp-lilas", 2)
    read_mid = message_id(read_id, TEAM_ADDRESS, RELAIS)
    assert bus.handle(RecordMailReceipt(parse_report(mdn(read_mid, reader=TEAM_ADDRESS, to=RELAIS))))
    assert not bus.handle(RecordMailReceipt(parse_report(mdn(read_mid, reader=TEAM_ADDRESS, to=RELAIS))))
    assert notification(service, read_id).read_at is not None
    bounce = dsn(message_id(bounced_id, TEAM_ADDRESS, RELAIS), recipient=TEAM_ADDRESS, to=RELAIS)
    assert bus.handle(RecordMailReceipt(parse_report(bounce)))
    dead = [d for d in mail_deliveries(service) if d.notification_id == bounced_id]
    assert dead[0].state == "dead" and dead[0].last_error == "dsn 5.1.1"
    statuses = {(r.notification_id, r.status) for r in _receipts(service)}
    assert statuses == {(read_id, "read"), (bounced_id, "failed")}


@pytest.mark.attack
def test_a_receipt_for_another_mailbox_or_a_guessed_id_changes_nothing(service):
    service.runtime.directory.add("team", "msp-lilas", "MSP des Lilas", mssante=TEAM_ADDRESS)
    bus = service.app.state.messagebus
    (sent,) = publish(service, "msp-lilas")
    other = "intrus@autre.mssante.fr"
    assert not bus.handle(RecordMailReceipt(parse_report(mdn(message_id(sent, other, RELAIS), reader=other,
                                                             to=RELAIS))))
    forged = mdn(message_id(sent, TEAM_ADDRESS, RELAIS), reader=other, to=RELAIS)
    assert not bus.handle(RecordMailReceipt(parse_report(forged)))
    assert not bus.handle(RecordMailReceipt(parse_report(mdn(message_id("guess", TEAM_ADDRESS, RELAIS),
                                                             reader=TEAM_ADDRESS, to=RELAIS))))
    assert notification(service, sent).read_at is None and _receipts(service) == []


@pytest.mark.attack
def test_mails_that_are_not_receipts_or_too_large_are_ignored():
    assert parse_report(b"Subject: hello\r\n\r\nbody") is None
    assert parse_report(b"\x00\xff" * 10) is None
    big = mdn("<n.0123456789abcdef@r.fr>", reader=TEAM_ADDRESS, to=RELAIS, error="x" * 2_000_000)
    assert parse_report(big) is None


def test_the_lgc_processing_code_is_kept():
    report = parse_report(mdn("<n.0123456789abcdef@r.fr>", reader=TEAM_ADDRESS, to=RELAIS,
                              disposition="processed/error", error="Patient inconnu\r\nX-Evil: 1"))
    assert report is not None and report.status == "failed" and report.code == "processed/error"
    assert report.detail == "Patient inconnu"  # the line after CR/LF is another field, never part of the code


def _receipts(service) -> list[MailReceiptRow]:
    with service.runtime.sessions() as session:
        return list(session.execute(select(MailReceiptRow)).scalars())


def test_the_delivery_body_is_the_stored_notification(service):
    service.runtime.directory.add("team", "msp-lilas", "MSP des Lilas", mssante=TEAM_ADDRESS)
    (sent,) = publish(service, "msp-lilas")
    (row,) = mail_deliveries(service)
    assert json.loads(row.body) == json.loads(json.dumps(mail_body(notification(service, sent))))


# --- letters from published examples and settings ---------------------------------------------------

CONFORMANCE = Path(__file__).resolve().parents[2].parent / "shared" / "conformance" / "examples"
DAVINCI = sorted((CONFORMANCE / "davinci-alerts" / "input-examples").glob("*.json"))


if DAVINCI:  # the published examples sit beside the repository (../shared/conformance) where a machine has them

    @pytest.mark.parametrize("path", DAVINCI, ids=[p.name for p in DAVINCI])
    def test_a_published_notification_bundle_gives_a_mail_with_a_parseable_zip(path):
        bundle = json.loads(path.read_text())
        letter = read_letter({"id": "n-1", "event": "discharge.recorded", "payload": bundle})
        mail = build_mail(letter, sender=RELAIS, recipient=TEAM_ADDRESS)
        (attachment,) = mail.iter_attachments()
        archive = zipfile.ZipFile(io.BytesIO(attachment.get_content()))
        etree.fromstring(archive.read("IHE_XDM/SUBSET01/METADATA.XML"))
        cda = etree.fromstring(archive.read("IHE_XDM/SUBSET01/DOC0001.XML"))
        assert cda.tag == "{urn:hl7-org:v3}ClinicalDocument"


@pytest.mark.parametrize("changes, setting", [
    ({"mssante_sender": None}, "RELAIS_MSSANTE_SENDER"),
    ({"mssante_smtp_url": "http://smtp.example:25"}, "RELAIS_MSSANTE_SMTP_URL"),
    ({"mssante_imap_url": "ftp://imap.example"}, "RELAIS_MSSANTE_IMAP_URL"),
    ({"mssante_ca_file": "/nonexistent/ca.pem"}, "CA_FILE"),
])
def test_unusable_mail_settings_stop_the_service_at_start_naming_the_setting(tmp_path, changes, setting):
    values = {"mssante_smtp_url": "smtps://relais%40x.mssante.fr:secret-password@127.0.0.1:9",
              "mssante_sender": RELAIS, **changes}
    settings = NotificationsSettings(environment="test", data_dir=tmp_path, **values)
    with pytest.raises(MailSettingsError) as refused:
        bootstrap(settings, run_workers=False)
    assert setting in str(refused.value) and "secret-password" not in str(refused.value)
