"""The CPTS dashboard page in headless Chromium (Debian's chromium driven by Playwright), against the
service served by uvicorn on loopback; keeps a screenshot in docs/img/snp-dashboard.png."""

from __future__ import annotations

import os
import shutil
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import playwright.sync_api as playwright_api
import pytest
import uvicorn
from fastapi.testclient import TestClient

from services.snp.bootstrap import bootstrap
from services.snp.entrypoints.consumers import on_careteam_message
from services.snp.entrypoints.workers import expire_due
from services.snp.handlers import stable_id
from services.snp.uow import SnpUnitOfWork
from shared.auth import Directory
from shared.identifiers import make_nir
from shared.settings import SnpSettings
from tests.infra.brokers import free_port
from tests.infra.wait import wait_for
from tests.unit.test_snp_service import (
    Clock,
    availability,
    bearer,
    service_request,
    status_params,
    territory_changed,
)

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "img" / "snp-dashboard.png"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DAY = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)  # 07:00 in Paris

# (request hour offset, patient commune, urgency, effecteur publishing a slot, slot commune, minutes later,
#  final status) - a small demo day for the 88-ouest territory.
SEED = [
    (0.5, "88516", "2h", "msp-vittel", "88516", 50, "fulfilled"),
    (1.0, "88114", "same-day", "gp-contrex", "88114", 150, "fulfilled"),
    (1.5, "88321", "48h", "gp-neufchateau", "88321", 600, "noshow"),
    (2.0, "88304", "same-day", "gp-mirecourt", "88304", 240, "fulfilled"),
    (2.5, "88516", "2h", "msp-vittel", "88516", 90, "fulfilled"),
    (3.0, "88124", "48h", "gp-darney", "88124", 1300, "booked"),
    (4.0, "88114", "same-day", "gp-contrex", "88114", 200, "fulfilled"),
    (5.0, "88310", "2h", None, None, 0, None),
    (6.0, "88258", "same-day", "gp-darney", "88124", 300, "fulfilled"),
    (7.5, "88516", "48h", "msp-vittel", "88516", 1500, "booked"),
    (9.0, "88321", "2h", "gp-neufchateau", "88321", 70, "noshow"),
    (10.0, "88114", "same-day", None, None, 0, None),
]
EFFECTEURS = ["msp-vittel", "gp-contrex", "gp-neufchateau", "gp-mirecourt", "gp-darney"]


@pytest.fixture
def served(tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is missing: run scripts/install.sh --test (apt-get install -y chromium)")
    clock = Clock(DAY)
    directory = Directory(f"sqlite:///{tmp_path / 'auth.sqlite'}")
    service = bootstrap(SnpSettings(data_dir=tmp_path), directory=directory, run_workers=False, clock=clock)
    tokens = {name: directory.add("team", name, name) for name in EFFECTEURS}
    tokens["sas-88"] = directory.add("sas", "sas-88", "SAS 88")
    tokens["cpts-ouest"] = directory.add("cpts", "cpts-ouest", "CPTS Ouest vosgien")
    uow = lambda: service.runtime.unit_of_work(SnpUnitOfWork)  # noqa: E731
    for postal in ("88800", "88140", "88300", "88500", "88260", "88410", "88320"):
        on_careteam_message(service.app.state.bus, territory_changed(postal, "cpts-ouest"))
    client = TestClient(service.app)
    for index, (hour, commune, urgency, effecteur, slot_commune, minutes, _) in enumerate(SEED):
        clock.now = DAY + timedelta(hours=hour)
        if effecteur:
            body = availability(
                slot_commune, [clock.now + timedelta(minutes=minutes)], agenda=f"a{index}", prefix=f"s{index}"
            )
            assert client.post("/snp/fhir", json=body, headers=bearer(tokens[effecteur])).status_code == 200
        response = client.post(
            "/snp/fhir/ServiceRequest",
            json=service_request(
                f"demo-{index}",
                commune,
                urgency,
                nir=make_nir(1 + index % 2, 50 + index, 3, "88", 516, index + 1),
            ),
            headers=bearer(tokens["sas-88"]),
        )
        assert response.status_code == 201, response.text
    clock.now = DAY + timedelta(days=2)
    for index, (_, _, _, effecteur, _, _, final) in enumerate(SEED):
        if not effecteur:
            continue
        with uow() as work:
            appointment = work.appointments.for_request(
                stable_id("request", "sas-88", f"demo-{index}")
            )
            appointment_id = appointment.id
        url = f"/snp/fhir/Appointment/{appointment_id}/$status"
        for status in ("booked", final) if final != "booked" else ("booked",):
            assert (
                client.post(url, json=status_params(status), headers=bearer(tokens[effecteur])).status_code
                == 200
            )
    expire_due(service.app.state.bus)

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(service.app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, 20, message="uvicorn on loopback")
    yield f"http://127.0.0.1:{port}", tokens["cpts-ouest"]
    server.should_exit = True
    thread.join(timeout=10)
    service.runtime.close()
    directory.close()


def test_the_coordinator_signs_in_once_and_sees_the_territory_charts(served, tmp_path):
    base, token = served
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 1000})
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
            # The old address leads to the page, which asks to sign in first.
            page.goto(f"{base}/snp/dashboard/page?territory=cpts-ouest&from=2026-11-23&to=2026-11-25")
            assert page.url == f"{base}/snp/app/signin"
            page.fill("#token", "rls_wrong")
            page.click("#signin")
            assert "Jeton inconnu" in page.inner_text("#message")
            page.fill("#token", token)
            page.click("#signin")
            page.wait_for_url(f"{base}/snp/app/dashboard")
            page.goto(f"{base}/snp/app/dashboard?territory=cpts-ouest&from=2026-11-23&to=2026-11-25")
            page.wait_for_selector("body[data-loaded=true]", timeout=15_000)
            tiles = page.inner_text("#tiles")
            assert "12" in tiles and "Placées dans le délai" in tiles
            # Seven communes of one to three requests each: all hidden, in one unlabelled row (issue 19).
            communes = page.inner_text("#by-commune")
            assert "Autres (petits effectifs)" in communes and "Vittel" not in communes
            assert page.locator("#by-hour svg rect").count() == 24
            # The token lives nowhere in the browser: not in storage, not in the page, not in the address.
            assert page.evaluate("Object.keys(sessionStorage).length + Object.keys(localStorage).length") == 0
            assert token not in page.content() and token not in page.url
            (session,) = [c for c in context.cookies() if c["name"] == "relais_session"]
            assert session["httpOnly"] and session["sameSite"] == "Strict"
            assert page.evaluate("document.cookie") == ""
            assert not blocked
            # The tracked screenshot is refreshed only on request; a test run must not dirty the tree.
            target = SCREENSHOT if os.environ.get("RELAIS_UPDATE_SCREENSHOTS") else tmp_path / SCREENSHOT.name
            target.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(target), full_page=True)
            assert target.stat().st_size > 10_000
            # Signing out ends the session: the page sends the visitor back to the sign-in form.
            page.click("#signout")
            page.wait_for_url(f"{base}/snp/app/signin")
            page.goto(f"{base}/snp/app/dashboard")
            assert page.url == f"{base}/snp/app/signin"
        finally:
            browser.close()
