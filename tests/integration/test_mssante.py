# ruff: noqa: F811 - the Kafka producer fixture of the notifications integration tests is reused by name

"""The MSSanté channel against a real mail server: GreenMail (SMTPS and IMAPS on loopback) is the operator.

A discharge posted to Relais (every service in one process, as `relais run`) ends as a mail in the treating
team's mailbox, read over IMAP as a practice software reads it; receipts sent back from that mailbox reach
Relais through its own mailbox. The CPTS's, the DAC's and another team's mailboxes stay empty.
"""

from __future__ import annotations

import io
import uuid
import zipfile
from collections.abc import Iterator
from email.message import EmailMessage

import pytest
from fastapi.testclient import TestClient
from lxml import etree
from sqlalchemy import select

from relais.combined import combined_app
from relais.services import SERVICE_NAMES, bootstrapper
from services.notifications.adapters.orm import DisclosureRow, NotificationRow
from services.notifications.bootstrap import bootstrap
from services.notifications.mssante.xdm import RIM, SUBSET, ZIP_NAME
from shared.auth import Directory
from shared.events import Role
from shared.identifiers import make_nir
from shared.settings import NotificationsSettings
from tests import factories as f
from tests.infra.greenmail import GreenMail
from tests.infra.wait import wait_for
from tests.integration.test_notifications import producer, publish  # noqa: F401 - the fixture and its sender
from tests.mail_factories import dsn, mdn

HOSPITAL, TEAM, OTHER_TEAM, CPTS, DAC = f.DEFAULT_FINESS, "msp-lilas", "msp-autre", "cpts-75", "dac-75"
RELAIS = "relais@relais.mssante.fr"
MAILBOXES = {
    TEAM: "secretariat@msp-lilas.mssante.fr",
    OTHER_TEAM: "accueil@msp-autre.mssante.fr",
    CPTS: "coordination@cpts75.mssante.fr",
    DAC: "appui@dac75.mssante.fr",
}
UNTREATED_NIR = make_nir(1, 47, 9, "75", 114, 207)
HL7 = {"hl7": "urn:hl7-org:v3"}
DEADLINE = 20.0


@pytest.fixture(scope="module")
def greenmail() -> Iterator[GreenMail]:
    server = GreenMail([RELAIS, *MAILBOXES.values()])
    server.start()
    yield server
    server.close()


@pytest.fixture
def relais(tmp_path, monkeypatch, greenmail):
    greenmail.purge([RELAIS, *MAILBOXES.values()])
    for name, value in {
        "RELAIS_DATA_DIR": str(tmp_path), "RELAIS_ENVIRONMENT": "test",
        "RELAIS_MSSANTE_SMTP_URL": greenmail.smtp_url(RELAIS), "RELAIS_MSSANTE_IMAP_URL": greenmail.imap_url(RELAIS),
        "RELAIS_MSSANTE_SENDER": RELAIS, "RELAIS_MSSANTE_CA_FILE": str(greenmail.cert),
        "RELAIS_MSSANTE_IMAP_INTERVAL_SECONDS": "0.2", "RELAIS_WEBHOOK_BACKOFF_BASE_SECONDS": "0.05",
    }.items():
        monkeypatch.setenv(name, value)
    directory = Directory(f"sqlite:///{tmp_path / 'auth.sqlite'}")
    tokens = {org: directory.add(role, org, org) for role, org in (
        (Role.HOSPITAL, HOSPITAL), (Role.TEAM, TEAM), (Role.TEAM, OTHER_TEAM), (Role.CPTS, CPTS), (Role.DAC, DAC),
        (Role.ADMIN, "admin"),
    )}
    for org in (OTHER_TEAM, CPTS, DAC):  # set by an administrator: the channel still never mails the CPTS or DAC
        directory.set_mssante_address(org, MAILBOXES[org])
    services = [bootstrapper(name)(directory=directory) for name in SERVICE_NAMES]
    with TestClient(combined_app(services)) as client:
        yield client, tokens
    for service in services:
        service.runtime.close()
    directory.close()


def _auth(tokens: dict[str, str], org: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens[org]}", "Content-Type": "application/fhir+json"}


def _event_mails(greenmail: GreenMail, org: str, event: str) -> list[EmailMessage]:
    return [m for m in greenmail.messages(MAILBOXES[org]) if m["X-Relais-Event"] == event]


def _feed_entry(client, tokens, org: str, event: str) -> dict | None:
    feed = client.get("/notifications/feed?limit=200", headers=_auth(tokens, org)).json()
    for entry in feed.get("entry", []):
        params = {p["name"]: p for p in entry["resource"]["parameter"]}
        if params["event"]["valueCode"] == event:
            return params
    return None


def _discharge(client, tokens) -> None:
    """The team enrols its patient; the hospital admits and discharges it, and discharges an untreated patient."""
    admin = {"Authorization": f"Bearer {tokens['admin']}"}
    assert client.put("/admissions/territories/75014", json={"cpts": CPTS, "dac": DAC}, headers=admin).status_code \
        == 200
    answer = client.put("/notifications/mssante", json={"address": MAILBOXES[TEAM]}, headers=_auth(tokens, TEAM))
    assert answer.status_code == 200, answer.text
    assert client.post("/admissions/fhir/CareTeam", json=f.careteam_resource(),
                       headers=_auth(tokens, TEAM)).status_code == 202
    for bundle, path in ((f.admission_message(), "admissions"), (f.full_discharge_message(), "discharge"),
                         (f.full_discharge_message(nir=UNTREATED_NIR, nda="NDA-2024-000999"), "discharge")):
        response = client.post(f"/{path}/fhir/$process-message", content=f.body(bundle),
                               headers=_auth(tokens, HOSPITAL))
        assert response.status_code == 200, response.text


def _zip(mail: EmailMessage) -> zipfile.ZipFile:
    (attachment,) = [a for a in mail.iter_attachments() if a.get_filename() == ZIP_NAME]
    return zipfile.ZipFile(io.BytesIO(attachment.get_content()))


def test_a_discharge_reaches_the_team_mailbox_as_an_xdm_letter_and_nobody_else(relais, greenmail):
    client, tokens = relais
    _discharge(client, tokens)
    (mail,) = wait_for(lambda: _event_mails(greenmail, TEAM, "discharge.recorded"), DEADLINE, 0.2,
                       "the discharge mail in the team's mailbox")
    assert mail["From"].addresses[0].addr_spec == RELAIS and mail["Disposition-Notification-To"] == RELAIS
    archive = _zip(mail)
    metadata = etree.fromstring(archive.read(f"{SUBSET}/METADATA.XML"))
    patient_ids = metadata.xpath("//rim:ExternalIdentifier[rim:Name/rim:LocalizedString/@value="
                                 "'XDSDocumentEntry.patientId']/@value", namespaces={"rim": RIM})
    assert patient_ids and all(v.split("^")[0] == f.DEFAULT_NIR for v in patient_ids)
    cda = etree.fromstring(archive.read(f"{SUBSET}/DOC0001.XML"))
    assert cda.xpath("string(//hl7:recordTarget/hl7:patientRole/hl7:id/@extension)", namespaces=HL7) == \
        f.DEFAULT_NIR
    assert cda.xpath("string(//hl7:custodian//hl7:name)", namespaces=HL7) == "CHU Exemple"
    followups = cda.xpath("//hl7:section[hl7:title='Suivis prévus']//hl7:item/text()", namespaces=HL7)
    assert any("Passage infirmier" in item for item in followups) and len(followups) == 3
    assert archive.read(f"{SUBSET}/DOC0002.PDF").startswith(b"%PDF")
    assert {"INDEX.HTM", "README.TXT"} <= set(archive.namelist())
    wait_for(lambda: _event_mails(greenmail, TEAM, "handoff.proposed"), DEADLINE, 0.2, "the handoff mail")
    # The CPTS was told about the untreated patient (minimised) and has an address: still no mail.
    wait_for(lambda: _feed_entry(client, tokens, CPTS, "discharge.recorded"), DEADLINE, 0.2, "the CPTS notice")
    for org in (CPTS, DAC, OTHER_TEAM):
        assert greenmail.messages(MAILBOXES[org]) == []
    assert len(_event_mails(greenmail, TEAM, "discharge.recorded")) == 1


def test_a_read_receipt_from_the_team_marks_the_notification_read_for_the_team_and_the_hospital(relais, greenmail):
    client, tokens = relais
    _discharge(client, tokens)
    (mail,) = wait_for(lambda: _event_mails(greenmail, TEAM, "discharge.recorded"), DEADLINE, 0.2, "the mail")
    greenmail.send(MAILBOXES[TEAM], mdn(mail["Message-ID"], reader=MAILBOXES[TEAM], to=RELAIS), RELAIS)
    entry = wait_for(lambda: (e := _feed_entry(client, tokens, TEAM, "discharge.recorded")) and "read" in e and e,
                     DEADLINE, 0.2, "the notification read")
    notification_id = entry["id"]["valueString"]
    receipts = client.get("/notifications/mssante/receipts", headers=_auth(tokens, TEAM)).json()
    assert {"notification_id": notification_id, "status": "read", "kind": "mdn"}.items() <= receipts[0].items()
    hospital_view = client.get("/notifications/receipts", headers=_auth(tokens, HOSPITAL)).text
    assert notification_id in hospital_view


def test_a_bounce_dead_letters_the_mail_and_the_feed_keeps_the_notification(relais, greenmail):
    client, tokens = relais
    _discharge(client, tokens)
    (mail,) = wait_for(lambda: _event_mails(greenmail, TEAM, "handoff.proposed"), DEADLINE, 0.2, "the mail")
    bounce = dsn(mail["Message-ID"], recipient=MAILBOXES[TEAM], to=RELAIS)
    greenmail.send(RELAIS, bounce, RELAIS)  # the operator's daemon writes to Relais' mailbox

    def dead() -> list[dict]:
        answer = client.get("/notifications/webhooks/deliveries?state=dead", headers=_auth(tokens, TEAM)).json()
        return [d for d in answer if d["target"]["kind"] == "mssante"]

    (letter,) = wait_for(dead, DEADLINE, 0.2, "the bounced mail as a dead letter")
    assert letter["last_error"] == "dsn 5.1.1"
    assert _feed_entry(client, tokens, TEAM, "handoff.proposed")["id"]["valueString"] == letter["notification_id"]


# --- on PostgreSQL and Kafka, two instances -------------------------------------------------------


def test_two_instances_on_postgres_and_kafka_mail_a_notification_once_and_read_its_receipt(
    postgres_url, tansu, producer, tmp_path, greenmail
):
    greenmail.purge([RELAIS, MAILBOXES[TEAM]])
    api_version = ".".join(map(str, tansu.api_version)) if tansu.api_version else None
    settings = NotificationsSettings(
        database_url=postgres_url, kafka_bootstrap_servers=tansu.bootstrap, kafka_api_version=api_version,
        kafka_session_timeout_ms=2000, environment="test", data_dir=tmp_path, dispatcher_idle_seconds=0.05,
        mssante_smtp_url=greenmail.smtp_url(RELAIS), mssante_imap_url=greenmail.imap_url(RELAIS),
        mssante_sender=RELAIS, mssante_ca_file=str(greenmail.cert), mssante_imap_interval_seconds=0.2,
    )
    directory = Directory(f"sqlite:///{tmp_path / 'auth.sqlite'}")
    team = f"msp-{uuid.uuid4().hex[:8]}"
    directory.add(Role.TEAM, team, "MSP des Lilas", mssante=MAILBOXES[TEAM])
    instances = [bootstrap(settings, directory=directory) for _ in range(2)]
    try:
        for instance in instances:
            instance.runtime.start()
        (sent,) = publish(producer, team, 1)
        (mail,) = wait_for(lambda: greenmail.messages(MAILBOXES[TEAM]), DEADLINE, 0.2, "the mail")
        greenmail.send(MAILBOXES[TEAM], mdn(mail["Message-ID"], reader=MAILBOXES[TEAM], to=RELAIS), RELAIS)

        def read() -> bool:
            with instances[0].runtime.sessions() as session:
                row = session.execute(select(NotificationRow).where(NotificationRow.id == sent)).scalar_one()
                return row.read_at is not None

        wait_for(read, DEADLINE, 0.2, "the notification read from its MDN")
        assert len(greenmail.messages(MAILBOXES[TEAM])) == 1
        with instances[0].runtime.sessions() as session:
            channels = set(session.execute(select(DisclosureRow.channel).where(
                DisclosureRow.notification_id == sent)).scalars())
        assert {"mssante", "mssante:read"} <= channels
    finally:
        for instance in instances:
            instance.runtime.close()
        directory.close()
