"""The team's worklist in headless Chromium shows what its MSSanté mailbox said about a letter: a discharge
posted to Relais (served by uvicorn, as `relais run`) is mailed through GreenMail, the team's software sends
its read receipt back, and the worklist row of that notification says `MSSanté : lu`."""

# ruff: noqa: F811 - the GreenMail and browser fixtures of the other modules are reused by name

from __future__ import annotations

import os

import httpx

from relais.demo import embedded_relais
from shared.events import Role
from tests import factories as f
from tests.infra.wait import wait_for
from tests.integration.test_coordination_pages import browser, open_page, sign_in  # noqa: F401 - fixture
from tests.integration.test_mssante import MAILBOXES, RELAIS, TEAM, greenmail  # noqa: F401 - fixture
from tests.mail_factories import mdn

DEADLINE = 30.0


def test_the_worklist_shows_the_read_receipt_of_the_discharge_letter(tmp_path, monkeypatch, greenmail, browser):
    greenmail.purge([RELAIS, MAILBOXES[TEAM]])
    for name, value in {
        "RELAIS_ENVIRONMENT": "test", "RELAIS_MSSANTE_SMTP_URL": greenmail.smtp_url(RELAIS),
        "RELAIS_MSSANTE_IMAP_URL": greenmail.imap_url(RELAIS), "RELAIS_MSSANTE_SENDER": RELAIS,
        "RELAIS_MSSANTE_CA_FILE": str(greenmail.cert), "RELAIS_MSSANTE_IMAP_INTERVAL_SECONDS": "0.2",
        "RELAIS_DATA_DIR": os.environ.get("RELAIS_DATA_DIR", str(tmp_path)),
    }.items():
        monkeypatch.setenv(name, value)
    with embedded_relais(tmp_path / "data") as (base, directory):
        hospital = directory.add(Role.HOSPITAL, f.DEFAULT_FINESS, "CHU Exemple")
        team = directory.add(Role.TEAM, TEAM, "MSP des Lilas")
        with httpx.Client(base_url=base, timeout=30) as http:
            fhir = {"Content-Type": "application/fhir+json"}
            as_team = {"Authorization": f"Bearer {team}"}
            assert http.put("/notifications/mssante", json={"address": MAILBOXES[TEAM]},
                            headers=as_team).status_code == 200
            assert http.post("/admissions/fhir/CareTeam", json=f.careteam_resource(),
                             headers={**as_team, **fhir}).status_code == 202
            answer = http.post("/discharge/fhir/$process-message", content=f.body(f.full_discharge_message()),
                               headers={"Authorization": f"Bearer {hospital}", **fhir})
            assert answer.status_code == 200, answer.text
            (mail,) = wait_for(lambda: [m for m in greenmail.messages(MAILBOXES[TEAM])
                                        if m["X-Relais-Event"] == "discharge.recorded"], DEADLINE, 0.2, "the mail")
            greenmail.send(MAILBOXES[TEAM], mdn(mail["Message-ID"], reader=MAILBOXES[TEAM], to=RELAIS), RELAIS)
            (receipt,) = wait_for(lambda: http.get("/notifications/mssante/receipts", headers=as_team).json(),
                                  DEADLINE, 0.2, "the read receipt recorded")
        context, page, blocked, errors = open_page(browser, base)
        sign_in(page, base, team)
        page.wait_for_selector("body[data-loaded=true]", timeout=20_000)
        row = page.locator(f"#notifications tr[data-notification='{receipt['notification_id']}']")
        assert row.locator("[data-mail=read]").inner_text() == "MSSanté : lu"
        assert "lue le" in row.inner_text()  # the MDN also marked the notification read
        assert not blocked and not errors
        context.close()
