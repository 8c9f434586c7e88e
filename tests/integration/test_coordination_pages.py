"""The coordination pages in headless Chromium (Debian's chromium driven by Playwright) against every service in
one process (as `relais run`: SQLite and the embedded log), seeded over HTTP by the demo's journeys.

Team referents answer handoffs from their worklist, the CPTS reads its board, each sees only its own organisation's
data, and the session behaves (sign-in, CSRF, sign-out, cookie flags). Screenshots go to docs/img/ when
RELAIS_UPDATE_SCREENSHOTS is set (a test run must not dirty the tree otherwise)."""

from __future__ import annotations

import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import playwright.sync_api as playwright_api
import pytest

from relais.demo import RelaisHttp, Scenario, Territory, embedded_relais, load_territory, register
from tests.infra.wait import wait_for

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
IMG = Path(__file__).resolve().parents[2] / "docs" / "img"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@dataclass
class Seeded:
    base: str
    territory: Territory
    tokens: dict[str, str]
    scenario: Scenario

    def task(self, task_id: str, key: str) -> dict[str, Any]:
        response = httpx.get(
            f"{self.base}/discharge/fhir/Task/{task_id}", headers={"Authorization": f"Bearer {self.tokens[key]}"}
        )
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is missing: run scripts/install.sh --test (apt-get install -y chromium)")
    data = tmp_path_factory.mktemp("relais") / "data"
    saved = os.environ.get("RELAIS_DATA_DIR")
    try:
        with embedded_relais(data) as (base, directory):
            run_tag = uuid.uuid4().hex[:8]
            territory = load_territory(run_tag)
            tokens = register(territory, directory)
            http = RelaisHttp({name: base for name in ("admissions", "discharge", "snp", "notifications")})
            scenario = Scenario(http, territory, tokens, timeout=60, run_tag=run_tag)
            for step in (
                scenario.start_feeds,
                scenario.set_territories,
                scenario.enrol_patients,
                scenario.wait_for_mirrors,
                scenario.admit_jeanne,
                scenario.discharge_jeanne,  # handoff to the MSP de Monthureux
                scenario.paul_without_team,  # minimised notices to the CPTS
                scenario.admit_marcel,
                scenario.discharge_marcel,  # handoff to the MSP de Lamarche
            ):
                step()
            marcel = scenario.expect("msp-lamarche", "handoff.proposed")[-1].subject
            scenario.handoffs["marcel"] = marcel or ""
            yield Seeded(base, territory, tokens, scenario)
            http.close()
    finally:
        if saved is None:
            os.environ.pop("RELAIS_DATA_DIR", None)
        else:
            os.environ["RELAIS_DATA_DIR"] = saved


@pytest.fixture
def browser():
    with playwright_api.sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield instance
        finally:
            instance.close()


def open_page(browser, base: str):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="fr-FR", timezone_id="Europe/Paris")
    page = context.new_page()
    blocked: list[str] = []
    # Loopback only: any other request is a regression (CDN, fonts...), refused and recorded.
    page.route(
        "**/*",
        lambda route: (
            route.continue_()
            if route.request.url.startswith(base)
            else (blocked.append(route.request.url), route.abort())
        ),
    )
    errors: list[str] = []
    # A 404 is an answer the pages expect (the Task search, while it is not served, or a foreign Task).
    page.on(
        "console",
        lambda message: errors.append(message.text)
        if message.type == "error" and "status of 404" not in message.text
        else None,
    )
    return context, page, blocked, errors


def sign_in(page, base: str, token: str, service: str = "discharge") -> None:
    page.goto(f"{base}/{service}/app/signin")
    page.fill("#token", token)
    page.click("#signin")


def screenshot(page, name: str, tmp_path: Path) -> None:
    target = IMG / name if os.environ.get("RELAIS_UPDATE_SCREENSHOTS") else tmp_path / name
    target.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(target), full_page=True)
    assert target.stat().st_size > 10_000


def test_a_team_referent_signs_in_accepts_a_handoff_from_the_worklist_and_signs_out(seeded, browser, tmp_path):
    jeanne, marcel = seeded.scenario.handoffs["jeanne"], seeded.scenario.handoffs["marcel"]
    context, page, blocked, errors = open_page(browser, seeded.base)
    page.goto(f"{seeded.base}/app/")
    assert page.url == f"{seeded.base}/discharge/app/signin"
    screenshot(page, "signin.png", tmp_path)
    page.fill("#token", seeded.tokens["msp-monthureux"])
    page.click("#signin")
    page.wait_for_url(f"{seeded.base}/discharge/app/worklist")
    page.wait_for_selector("body[data-loaded=true]", timeout=20_000)

    assert page.inner_text("#organisation") == seeded.territory.org("msp-monthureux").name
    rows = page.locator("#handoffs tbody tr")
    assert rows.count() == 1 and rows.first.get_attribute("data-task") == jeanne
    assert seeded.territory.people["jeanne"].nir in rows.first.inner_text()
    assert page.locator("#followups tbody tr").count() >= 1
    assert page.locator("#notifications tbody tr").count() >= 3
    # Another team's handoff and patient never reach this page.
    content = page.content()
    assert marcel not in content and seeded.territory.people["marcel"].nir not in content
    screenshot(page, "worklist.png", tmp_path)

    page.click(f"#handoffs tr[data-task='{jeanne}'] button.accept")
    page.wait_for_selector("#status:has-text('Réponse enregistrée')", timeout=20_000)
    assert page.locator("#handoffs tbody tr").count() == 0
    assert seeded.task(jeanne, "msp-monthureux")["status"] == "accepted"

    # Reading a notification from the page acknowledges it through the API.
    unread = page.locator("#notifications tr.unread").first
    notification = unread.get_attribute("data-notification")
    unread.locator("button.ack").click()
    page.wait_for_selector(f"#notifications tr.read[data-notification='{notification}']", timeout=20_000)

    page.click("#signout")
    page.wait_for_url(f"{seeded.base}/discharge/app/signin")
    page.goto(f"{seeded.base}/discharge/app/worklist")
    assert page.url == f"{seeded.base}/discharge/app/signin"
    assert not blocked and not errors
    context.close()


def test_a_team_declines_with_a_reason_and_the_cpts_board_shows_only_minimised_facts(seeded, browser, tmp_path):
    marcel = seeded.scenario.handoffs["marcel"]
    context, page, blocked, errors = open_page(browser, seeded.base)
    sign_in(page, seeded.base, seeded.tokens["msp-lamarche"])
    page.wait_for_selector("body[data-loaded=true]", timeout=20_000)
    row = page.locator(f"#handoffs tr[data-task='{marcel}']")
    assert page.locator("#handoffs tbody tr").count() == 1
    assert seeded.territory.people["jeanne"].nir not in page.content()
    row.locator("button.decline").click()
    row.locator("button.confirm-decline").click()
    assert "motif" in page.inner_text("#status")  # no reason, no request
    row.locator("input.reason").fill("Patientèle complète, pas de nouveau patient")
    row.locator("button.confirm-decline").click()
    page.wait_for_selector("#status:has-text('Réponse enregistrée')", timeout=20_000)
    task = seeded.task(marcel, "msp-lamarche")
    assert task["status"] == "rejected" and "complète" in task["statusReason"]["text"]
    context.close()

    seeded.scenario.expect("cpts", "handoff.declined")
    context, page, cpts_blocked, cpts_errors = open_page(browser, seeded.base)
    sign_in(page, seeded.base, seeded.tokens["cpts"])
    page.wait_for_url(f"{seeded.base}/discharge/app/board")
    page.wait_for_selector("body[data-loaded=true]", timeout=20_000)
    assert page.locator("#failed-handoffs tbody tr").count() >= 1
    assert "Relais refusé" in page.inner_text("#failed-handoffs")
    assert page.locator("#by-day svg rect").count() >= 1
    # The orientation queue lists Paul (discharged without a team) and Marcel (declined), as minimised facts.
    assert not page.is_visible("#orientations-unavailable")
    assert page.locator("#orientations tbody tr").count() >= 2
    assert "Relais refusé" in page.inner_text("#orientations")
    assert page.locator("#handoff-states svg rect").count() >= 1
    content = page.content()
    for person in seeded.territory.people.values():
        assert person.nir not in content and person.family not in content
    screenshot(page, "board.png", tmp_path)
    assert not blocked and not errors and not cpts_blocked and not cpts_errors
    # A team's page is not the CPTS's: refused (403), and nothing of the team shows.
    page.goto(f"{seeded.base}/discharge/app/worklist")
    assert "Page réservée" in page.inner_text("main")
    context.close()


def test_the_session_cookie_is_httponly_strict_and_writes_without_the_csrf_token_are_refused(seeded, browser):
    context, page, _, _ = open_page(browser, seeded.base)
    sign_in(page, seeded.base, seeded.tokens["msp-lamarche"])
    page.wait_for_selector("body[data-loaded=true]", timeout=20_000)
    (cookie,) = [c for c in context.cookies() if c["name"] == "relais_session"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/"
    assert cookie["expires"] > 0  # a persistent cookie that ends, not one that lives as long as the browser
    assert not cookie["secure"]  # development over loopback; Secure outside development (tests/security)
    assert page.evaluate("document.cookie") == ""  # the page's scripts cannot read the session
    url = f"/notifications/feed/{uuid.uuid4()}/$ack"
    without = page.evaluate(f"fetch('{url}', {{method: 'POST', credentials: 'same-origin'}}).then(r => r.status)")
    assert without == 403
    wrong = page.evaluate(
        f"fetch('{url}', {{method: 'POST', headers: {{'X-CSRF-Token': 'forged'}}}}).then(r => r.status)"
    )
    assert wrong == 403
    # With the page's token the same call reaches the API, which answers for this organisation only (404).
    right = page.evaluate(
        "fetch('" + url + "', {method: 'POST', headers: {'X-CSRF-Token': "
        "document.querySelector('meta[name=csrf-token]').content}}).then(r => r.status)"
    )
    assert right == 404
    context.close()


def test_the_pages_carry_a_strict_content_security_policy(seeded):
    with httpx.Client(base_url=seeded.base) as client:
        signin = client.get("/discharge/app/signin")
        csp = signin.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
        assert signin.headers["x-frame-options"] == "DENY" and signin.headers["cache-control"] == "no-store"
        wait_for(lambda: client.get("/discharge/app/static/relais.js").status_code == 200, 5)
        assert client.get("/discharge/app/static/..%2Fsessions.py").status_code == 404


def test_the_cpts_board_finds_a_team_of_its_territory_by_name(seeded, browser, tmp_path):
    from shared.auth import Directory
    from shared.directory.importer import import_directory
    from shared.settings import RelaisSettings
    from tests.directory_factories import doctor, write_rpps

    team = seeded.territory.org("msp-lamarche")
    settings = RelaisSettings()  # the seeded territory's data directory (RELAIS_DATA_DIR)
    directory = Directory(settings.resolved_auth_url, settings.auth_database_schema)
    practice = doctor(1, team.id, team.name, commune="88258", postal_code="88320")
    import_directory(directory.engine, rpps=write_rpps(tmp_path / "rpps.txt", [practice]))
    directory.close()
    seeded.scenario.expect("cpts", "orientation.requested")
    context, page, blocked, errors = open_page(browser, seeded.base)
    sign_in(page, seeded.base, seeded.tokens["cpts"])
    page.wait_for_selector("body[data-loaded=true]", timeout=20_000)
    rows = page.locator("#orientations tbody tr")  # Paul's orientation: the next test assigns it
    assert rows.count() >= 1
    pauls = seeded.territory.people["paul"].commune
    assert pauls.name in page.inner_text("#orientations")  # by name, not its INSEE code
    picker = rows.first.locator("input.team")
    picker.fill("lamar")
    option = rows.first.locator("datalist option")
    wait_for(lambda: option.count() == 1, timeout=20, message="the team picker's options")
    assert option.first.get_attribute("value").startswith(team.name)
    assert not blocked and not errors
    context.close()


def _orientation(seeded: Seeded, reason: str) -> dict[str, Any]:
    response = httpx.get(
        f"{seeded.base}/discharge/fhir/Task",
        params={"code": "orientation", "status": "requested"},
        headers={"Authorization": f"Bearer {seeded.tokens['cpts']}"},
    )
    assert response.status_code == 200, response.text
    found = [
        e["resource"]
        for e in response.json().get("entry", [])
        if e["resource"]["statusReason"]["coding"][0]["code"] == reason
    ]
    assert found, response.text
    return found[0]


def test_the_cpts_assigns_a_team_from_the_board_and_that_team_accepts_from_its_worklist(seeded, browser, tmp_path):
    seeded.scenario.expect("cpts", "orientation.requested")
    orientation = _orientation(seeded, "no-team")  # Paul
    team = seeded.territory.org("msp-monthureux")
    context, page, blocked, errors = open_page(browser, seeded.base)
    sign_in(page, seeded.base, seeded.tokens["cpts"])
    page.wait_for_url(f"{seeded.base}/discharge/app/board")
    page.wait_for_selector("body[data-loaded=true]", timeout=20_000)
    row = page.locator(f"#orientations tr[data-task='{orientation['id']}']")
    assert "Sortie sans équipe traitante" in row.inner_text()
    screenshot(page, "board-orientation.png", tmp_path)
    row.locator("input.team").fill(team.id)
    row.locator("button.assign").click()
    page.wait_for_selector("#status:has-text('Équipe proposée')", timeout=20_000)
    # Issue 22: the oriented patient stays on the board, with its state, until the orientation is closed.
    row = page.locator(f"#orientations tr[data-task='{orientation['id']}']")
    assert row.get_attribute("data-state") == "in-progress" and f"Proposée à {team.id}" in row.inner_text()
    assert row.locator("button.assign").count() == 0
    content = page.content()
    for person in seeded.territory.people.values():
        assert person.nir not in content and person.family not in content
    assert not blocked and not errors
    context.close()

    seeded.scenario.expect("msp-monthureux", "orientation.assigned")
    context, page, blocked, errors = open_page(browser, seeded.base)
    sign_in(page, seeded.base, seeded.tokens["msp-monthureux"])
    page.wait_for_selector("body[data-loaded=true]", timeout=20_000)
    rows = page.locator("#handoffs tbody tr")
    assert rows.count() == 1 and "Orienté par la CPTS" in rows.first.inner_text()
    paul = seeded.territory.people["paul"]
    assert paul.nir not in page.content() and paul.family not in page.content()  # not before it accepts
    handoff = rows.first.get_attribute("data-task")
    screenshot(page, "worklist-orientation.png", tmp_path)
    rows.first.locator("button.accept").click()
    page.wait_for_selector("#status:has-text('Réponse enregistrée')", timeout=20_000)
    accepted = seeded.task(handoff, "msp-monthureux")
    assert accepted["status"] == "accepted" and accepted["for"]["identifier"]["value"] == paul.nir
    assert seeded.task(orientation["id"], "cpts")["status"] == "completed"
    # Another team's page shows nothing of it.
    context.close()
    context, page, _, _ = open_page(browser, seeded.base)
    sign_in(page, seeded.base, seeded.tokens["msp-lamarche"])
    page.wait_for_selector("body[data-loaded=true]", timeout=20_000)
    assert handoff not in page.content() and paul.nir not in page.content()
    assert not blocked and not errors
    context.close()


def test_a_team_uploads_its_patient_list_from_its_worklist(seeded, browser, tmp_path):
    from shared.identifiers import make_nir

    nir = make_nir(2, 47, 6, "88", 258, 901)
    upload = tmp_path / "patientele.csv"
    rows = ["NIR;Nom;Prénom;Naissance;Code postal", f"{nir};THOMAS;Alice;1947-06-02;88320", "123;X;Y;1947-06-02;88320"]
    upload.write_text("\n".join(rows) + "\n")
    context, page, blocked, errors = open_page(browser, seeded.base)
    sign_in(page, seeded.base, seeded.tokens["msp-lamarche"])
    page.wait_for_selector("body[data-loaded=true]", timeout=20_000)

    page.set_input_files("#panel-file", str(upload))
    page.click("#panel-form button[type=submit]")
    page.wait_for_selector("#status:has-text('Liste envoyée')", timeout=20_000)

    assert page.inner_text("#panel-summary") == "1 inscrits, 1 refusés"
    refused = page.locator("#panel-refused tbody tr").first.inner_text()
    assert refused.startswith("ligne 3") and "NIR invalide" in refused  # in French, as the whole page
    screenshot(page, "worklist-panel.png", tmp_path)
    assert not blocked and not errors
    context.close()


def test_the_worklist_names_the_teams_patients_and_the_hospital(seeded, browser):
    jeanne = seeded.territory.people["jeanne"]
    hospital = seeded.territory.org("hospital")
    context, page, blocked, errors = open_page(browser, seeded.base)
    sign_in(page, seeded.base, seeded.tokens["msp-monthureux"])
    page.wait_for_selector("body[data-loaded=true]", timeout=20_000)

    followups = page.inner_text("#followups")
    assert jeanne.family.upper() in followups.upper() and jeanne.nir in followups  # the name beside the INS
    assert hospital.name in page.inner_text("#notifications")  # the sender's name, not its FINESS
    assert seeded.territory.people["marcel"].family not in page.content()  # another team's patient
    assert not blocked and not errors
    context.close()
