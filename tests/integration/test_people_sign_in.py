"""People sign in to the pages as themselves through a real OpenID provider (oidc-provider, Pro Santé Connect-
shaped claims), in headless Chromium against every service in one process; the audit names the person.

Attacks next to the feature: a wrong or replayed `state`, an ID token for another audience, an unknown RPPS, and a
person of two organisations choosing one they were not offered."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from authlib.integrations.requests_client import OAuth2Session
from joserfc.jwk import RSAKey
from sqlalchemy import create_engine, text

from relais.demo import RelaisHttp, Scenario, Territory, embedded_relais, load_territory, register
from shared.members import Members
from shared.settings import RelaisSettings
from shared.web.oidc import OidcClient, SignInFailed
from tests.infra.oidc import Client, OidcProvider, client, free_port, oidc_provider, psc_user
from tests.integration.test_coordination_pages import browser, open_page, screenshot  # noqa: F401 - shared

MEDECIN, COORDINATRICE, DOUBLE, INCONNU = "10001234567", "10009876543", "10005555555", "10007777777"
USERS = {
    "medecin": psc_user(MEDECIN, "Anne", "Médecin", ["880000001"]),
    "coordinatrice": psc_user(COORDINATRICE, "Claire", "Coordinatrice", ["880000002"]),
    "double": psc_user(DOUBLE, "Paul", "Deux-Cabinets", ["880000001", "880000003"]),
    "inconnu": psc_user(INCONNU, "Ines", "Inconnue", ["880000009"]),
}
CLIENT_KEY = RSAKey.generate_key(2048, parameters={"kid": "relais-1", "alg": "RS256"}, private=True)
OIDC_ENV = ("RELAIS_OIDC_ISSUER", "RELAIS_OIDC_CLIENT_ID", "RELAIS_OIDC_CLIENT_SECRET", "RELAIS_OIDC_REDIRECT_URL")


@dataclass
class World:
    base: str
    data: Path
    territory: Territory
    tokens: dict[str, str]
    scenario: Scenario
    provider: OidcProvider
    other: Client

    def audit(self, service: str) -> list[dict[str, Any]]:
        engine = create_engine(f"sqlite:///{self.data / f'{service}.sqlite'}")
        with engine.connect() as connection:
            rows = connection.execute(text("SELECT action, outcome, organisation_id, detail FROM audit_log")).all()
        engine.dispose()
        return [{"action": r[0], "outcome": r[1], "organisation_id": r[2], "detail": _json(r[3])} for r in rows]


def _json(value: Any) -> dict[str, Any]:
    import json

    return json.loads(value) if isinstance(value, str) else (value or {})


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Iterator[World]:
    data = tmp_path_factory.mktemp("relais") / "data"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    relais = client([f"{base}/discharge/app/oidc/callback", f"{base}/snp/app/oidc/callback"])
    other = client([f"{base}/elsewhere/callback"], client_id="another-service")
    signed = client([f"{base}/discharge/app/oidc/callback"], client_id="relais-private-key-jwt")
    signed.extra = {
        "token_endpoint_auth_method": "private_key_jwt",
        "token_endpoint_auth_signing_alg": "RS256",
        "jwks": {"keys": [CLIENT_KEY.as_dict(private=False)]},
    }
    saved = {name: os.environ.get(name) for name in (*OIDC_ENV, "RELAIS_DATA_DIR")}
    try:
        with oidc_provider([relais, other, signed], USERS) as provider:
            os.environ.update(
                RELAIS_OIDC_ISSUER=provider.issuer,
                RELAIS_OIDC_CLIENT_ID=relais.client_id,
                RELAIS_OIDC_CLIENT_SECRET=relais.client_secret,
                RELAIS_OIDC_REDIRECT_URL=f"{base}/{{service}}/app/oidc/callback",
            )
            with embedded_relais(data, port=port) as (url, directory):
                run_tag = uuid.uuid4().hex[:8]
                territory = load_territory(run_tag)
                tokens = register(territory, directory)
                members = Members(directory)
                members.add(territory.org("msp-monthureux").id, MEDECIN, "Anne Médecin")
                members.add(territory.org("cpts").id, COORDINATRICE, "Claire Coordinatrice")
                members.add(territory.org("msp-monthureux").id, DOUBLE, "Paul Deux-Cabinets")
                members.add(territory.org("msp-lamarche").id, DOUBLE, "Paul Deux-Cabinets")
                http = RelaisHttp({name: url for name in ("admissions", "discharge", "snp", "notifications")})
                scenario = Scenario(http, territory, tokens, timeout=60, run_tag=run_tag)
                for step in (
                    scenario.start_feeds, scenario.set_territories, scenario.enrol_patients,
                    scenario.wait_for_mirrors, scenario.admit_jeanne, scenario.discharge_jeanne,
                    scenario.paul_without_team,  # an orientation waiting for the CPTS
                ):
                    step()
                yield World(url, data, territory, tokens, scenario, provider, other)
                http.close()
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def through_provider(page, login: str) -> None:
    """The provider's own interaction pages: its login form, then its consent page."""
    page.wait_for_selector("input[name=login]", timeout=20_000)
    page.fill("input[name=login]", login)
    page.fill("input[name=password]", "carte-e-cps")
    page.click("button[type=submit]")
    page.wait_for_selector("button[type=submit]:has-text('Continue')", timeout=20_000)
    page.click("button[type=submit]:has-text('Continue')")


def sign_in_as(page, base: str, login: str, service: str = "discharge") -> None:
    page.goto(f"{base}/{service}/app/signin")
    page.click("#psc")
    through_provider(page, login)


def test_a_doctor_of_an_msp_signs_in_with_the_provider_accepts_a_handoff_and_the_audit_names_her(
    world, browser, tmp_path  # noqa: F811
):
    jeanne = world.scenario.handoffs["jeanne"]
    context, page, _blocked, errors = open_page(browser, world.base)
    page.unroute("**/*")  # the provider's pages live on another loopback port
    page.goto(f"{world.base}/discharge/app/signin")
    screenshot(page, "signin-people.png", tmp_path)
    sign_in_as(page, world.base, "medecin")
    page.wait_for_url(f"{world.base}/discharge/app/worklist", timeout=20_000)
    page.wait_for_selector("body[data-loaded=true]", timeout=20_000)
    assert page.inner_text("#person") == "Anne Médecin"
    assert page.inner_text("#organisation") == world.territory.org("msp-monthureux").name
    (cookie,) = [c for c in context.cookies() if c["name"] == "relais_session"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"

    page.click(f"#handoffs tr[data-task='{jeanne}'] button.accept")
    page.wait_for_selector("#status:has-text('Réponse enregistrée')", timeout=20_000)
    accepted = [row for row in world.audit("discharge") if row["action"] == "handoff.accept"]
    assert accepted and accepted[-1]["detail"]["person"] == {"rpps": MEDECIN, "name": "Anne Médecin"}
    assert accepted[-1]["organisation_id"] == world.territory.org("msp-monthureux").id
    signed_in = [r for r in world.audit("discharge") if r["detail"].get("reason") == "signed-in"]
    assert signed_in[-1]["detail"]["person"]["rpps"] == MEDECIN

    # She opens the discharge's notification to read it: the referent and the follow-ups the hospital planned.
    discharge = page.locator("#notifications tbody tr", has_text="Sortie").first
    discharge.locator("button.open").click()
    page.wait_for_selector("#reading:not([hidden])", timeout=20_000)
    reading = page.inner_text("#reading")
    diagnosis = world.territory.people["jeanne"].conditions[0][1]
    assert diagnosis in reading and "Dr Claire HUMBERT" in reading
    assert "Suivis prévus" in reading and "Consultation du médecin traitant" in reading
    assert page.evaluate("document.activeElement.id") == "reading-title"
    screenshot(page, "worklist-reading.png", tmp_path)
    page.click("#reading-close")

    # She marks a follow-up done today: it leaves the open list, and the audit names her.
    page.wait_for_selector("#followups tbody tr", timeout=20_000)
    followup = page.locator("#followups tbody tr").first
    task_id = followup.get_attribute("data-task")
    followup.locator("button.done").click()
    page.wait_for_selector(f"#followups tbody tr[data-task='{task_id}'] >> nth=0", state="detached", timeout=20_000)
    done = [r for r in world.audit("discharge") if r["action"] == "followup.complete"]
    assert done and done[-1]["detail"]["person"] == {"rpps": MEDECIN, "name": "Anne Médecin"}
    # The provider's development pages import a web font, unreachable here; nothing else may fail.
    assert not [error for error in errors if "ERR_NAME_NOT_RESOLVED" not in error]
    context.close()


def test_a_cpts_coordinator_proposes_a_team_and_sees_the_orientation_accepted(world, browser, tmp_path):  # noqa: F811
    context, page, _, _ = open_page(browser, world.base)
    page.unroute("**/*")
    sign_in_as(page, world.base, "coordinatrice")
    page.wait_for_url(f"{world.base}/discharge/app/board", timeout=20_000)
    page.wait_for_selector("body[data-loaded=true]", timeout=20_000)
    assert page.inner_text("#person") == "Claire Coordinatrice"
    assert page.inner_text("#organisation") == world.territory.org("cpts").name
    waiting = page.locator("#orientations tbody tr[data-state=requested]").first
    orientation = waiting.get_attribute("data-task")
    lamarche = world.territory.org("msp-lamarche")
    # By name: the field suggests the directory's teams; the name alone is enough.
    assert page.locator(f"#teams-list option[value='{lamarche.name} ({lamarche.id})']").count() == 1
    waiting.locator("input.team").fill(lamarche.name)
    waiting.locator("button.assign").click()
    page.wait_for_selector("#status:has-text('Équipe proposée')", timeout=20_000)
    row = page.locator(f"#orientations tr[data-task='{orientation}']")
    assert row.get_attribute("data-state") == "in-progress" and f"Proposée à {lamarche.id}" in row.inner_text()
    assigned = [r for r in world.audit("discharge") if r["action"] == "orientation.assign"]
    assert assigned[-1]["detail"]["person"]["rpps"] == COORDINATRICE

    # The team accepts (through the API, with its token): the board shows the orientation accepted, still listed.
    task = httpx.get(f"{world.base}/discharge/fhir/Task/{orientation}",
                     headers={"Authorization": f"Bearer {world.tokens['cpts']}"}).json()
    handoff = next(o["valueReference"]["reference"] for o in task["output"] if o["type"]["text"] == "handoff")
    accepted = httpx.post(f"{world.base}/discharge/fhir/{handoff}/$accept",
                          headers={"Authorization": f"Bearer {world.tokens['msp-lamarche']}"})
    assert accepted.status_code == 200, accepted.text
    page.reload()
    page.wait_for_selector("body[data-loaded=true]", timeout=20_000)
    row = page.locator(f"#orientations tr[data-task='{orientation}']")
    assert row.get_attribute("data-state") == "completed" and f"Acceptée par {lamarche.id}" in row.inner_text()
    screenshot(page, "board-states.png", tmp_path)
    context.close()


def test_the_hospital_sees_its_handoffs_and_their_states(world, browser, tmp_path):  # noqa: F811
    context, page, _, errors = open_page(browser, world.base)
    page.goto(f"{world.base}/discharge/app/signin")
    page.fill("#token", world.tokens["hospital"])
    page.click("#signin")
    page.wait_for_url(f"{world.base}/discharge/app/hospital", timeout=20_000)
    page.wait_for_selector("body[data-loaded=true]", timeout=20_000)
    rows = page.locator("#hospital-handoffs tbody tr")
    assert rows.count() >= 1
    assert world.territory.people["jeanne"].nir in page.inner_text("#hospital-handoffs")
    screenshot(page, "hospital.png", tmp_path)
    assert not errors
    context.close()


def test_a_person_of_two_organisations_picks_the_one_she_acts_for(world, browser, tmp_path):  # noqa: F811
    context, page, _, _ = open_page(browser, world.base)
    page.unroute("**/*")
    sign_in_as(page, world.base, "double")
    page.wait_for_selector("input[name=organisation]", timeout=20_000)
    screenshot(page, "choose-organisation.png", tmp_path)
    offered = page.locator("input[name=organisation]")
    assert sorted(offered.nth(i).get_attribute("value") for i in range(offered.count())) == sorted(
        [world.territory.org("msp-monthureux").id, world.territory.org("msp-lamarche").id]
    )
    page.check(f"input[value='{world.territory.org('msp-lamarche').id}']")
    page.click("#choose")
    page.wait_for_url(f"{world.base}/discharge/app/worklist", timeout=20_000)
    assert page.inner_text("#organisation") == world.territory.org("msp-lamarche").name
    assert page.inner_text("#person") == "Paul Deux-Cabinets"
    context.close()


@pytest.mark.attack
def test_a_person_of_two_organisations_cannot_choose_one_she_was_not_offered(world, browser):  # noqa: F811
    context, page, _, _ = open_page(browser, world.base)
    page.unroute("**/*")
    sign_in_as(page, world.base, "double")
    page.wait_for_selector("input[name=organisation]", timeout=20_000)
    # The form is edited in the browser to name the CPTS instead.
    page.eval_on_selector("input[name=organisation]", f"e => e.value = '{world.territory.org('cpts').id}'")
    page.check("input[name=organisation] >> nth=0")
    page.click("#choose")
    page.wait_for_selector("#message.error", timeout=20_000)
    assert "organisations proposées" in page.inner_text("#message")
    assert not [c for c in context.cookies() if c["name"] == "relais_session"]
    context.close()


@pytest.mark.attack
def test_an_unknown_rpps_is_refused_and_the_refusal_is_audited(world, browser):  # noqa: F811
    context, page, _, _ = open_page(browser, world.base)
    page.unroute("**/*")
    sign_in_as(page, world.base, "inconnu")
    page.wait_for_selector("#message.error", timeout=20_000)
    assert "membre d'aucune organisation" in page.inner_text("#message")
    assert not [c for c in context.cookies() if c["name"] == "relais_session"]
    refused = [r for r in world.audit("discharge") if r["detail"].get("reason") == "oidc-unknown-person"]
    assert refused and refused[-1]["detail"]["person"]["rpps"] == INCONNU
    context.close()


@pytest.mark.attack
def test_a_callback_with_a_wrong_state_is_refused(world):
    with httpx.Client(base_url=world.base) as http:
        started = http.get("/discharge/app/oidc/login")
        assert started.status_code == 303 and started.headers["location"].startswith(world.provider.issuer)
        answer = http.get("/discharge/app/oidc/callback", params={"code": "anything", "state": "not-the-one"})
        assert answer.status_code == 400 and "relais_session" not in answer.cookies
        assert "expiré ou a déjà servi" in answer.text


@pytest.mark.attack
def test_a_replayed_callback_is_refused_even_with_the_state_cookie(world, browser):  # noqa: F811
    context, page, _, _ = open_page(browser, world.base)
    page.unroute("**/*")
    callbacks: list[str] = []
    page.on("request", lambda r: callbacks.append(r.url) if "/oidc/callback" in r.url else None)
    sign_in_as(page, world.base, "medecin")
    page.wait_for_url(f"{world.base}/discharge/app/worklist", timeout=20_000)
    context.close()
    (replayed,) = callbacks
    state = httpx.URL(replayed).params["state"]
    with httpx.Client(cookies={"relais_oidc": state}) as http:
        answer = http.get(replayed)
    assert answer.status_code == 400 and "relais_session" not in answer.cookies
    assert any(r["detail"].get("reason") == "oidc-state-replayed" for r in world.audit("discharge"))


@pytest.mark.attack
def test_an_id_token_the_provider_issued_for_another_service_is_refused(world, browser):  # noqa: F811
    """A real ID token of the same provider, for another client (aud): Relais's check refuses it."""
    other = world.other
    session = OAuth2Session(
        other.client_id, other.client_secret, redirect_uri=other.redirect_uris[0], scope="openid scope_all",
        code_challenge_method="S256",
    )
    verifier, nonce = uuid.uuid4().hex * 2, uuid.uuid4().hex
    url, _state = session.create_authorization_url(
        f"{world.provider.issuer}/auth", code_verifier=verifier, nonce=nonce, acr_values="eidas1"
    )
    context, page, _, _ = open_page(browser, world.base)
    page.unroute("**/*")
    page.goto(url)
    with page.expect_request(lambda r: r.url.startswith(other.redirect_uris[0])) as redirected:
        through_provider(page, "medecin")
    code = httpx.URL(redirected.value.url).params["code"]
    context.close()
    token = session.fetch_token(f"{world.provider.issuer}/token", code=code, code_verifier=verifier)
    relais = OidcClient(RelaisSettings())
    with pytest.raises(SignInFailed) as refused:
        relais.validate_id_token(token["id_token"], nonce)
    assert refused.value.reason == "id-token"


def test_relais_signs_its_token_request_with_a_private_key_when_configured(world, browser, tmp_path):  # noqa: F811
    """private_key_jwt: no client secret; the provider knows the public key and checks the signed assertion."""
    key_file = tmp_path / "relais-oidc.pem"
    key_file.write_bytes(CLIENT_KEY.as_pem(private=True))
    settings = RelaisSettings(
        oidc_issuer=world.provider.issuer, oidc_client_id="relais-private-key-jwt", oidc_client_secret=None,
        oidc_private_key_file=key_file, oidc_redirect_url=f"{world.base}/{{service}}/app/oidc/callback",
    )
    relais = OidcClient(settings)
    authorization = relais.authorization("discharge")
    context, page, _, _ = open_page(browser, world.base)
    page.unroute("**/*")
    page.route("**/discharge/app/oidc/callback**", lambda route: route.fulfill(status=204))
    page.goto(authorization.url)
    with page.expect_request(lambda r: "/discharge/app/oidc/callback" in r.url) as redirected:
        through_provider(page, "medecin")
    code = httpx.URL(redirected.value.url).params["code"]
    context.close()
    identity = relais.sign_in("discharge", code, authorization.code_verifier, authorization.nonce)
    assert identity.rpps == MEDECIN and identity.structures == ("880000001",)


@pytest.mark.attack
def test_the_team_names_are_for_a_signed_in_cpts_only(world, browser):  # noqa: F811
    assert httpx.get(f"{world.base}/discharge/app/teams").status_code == 401
    context, page, _, _ = open_page(browser, world.base)
    page.goto(f"{world.base}/discharge/app/signin")
    page.fill("#token", world.tokens["msp-lamarche"])
    page.click("#signin")
    page.wait_for_url(f"{world.base}/discharge/app/worklist", timeout=20_000)
    assert page.evaluate("fetch('/discharge/app/teams').then(r => r.status)") == 403
    context.close()
