"""Attacks on the page sessions: fixation, CSRF, cross-site writes, expired and revoked sessions, sign-in floods.

The app under attack is the kernel alone (the service factory, the session layer and a protected route), so these
tests hold whatever the services do with the principal they are given."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from fastapi import APIRouter, Depends
from fastapi.testclient import TestClient

from shared.api.app import create_service_app
from shared.auth import Directory, Principal, current_principal, hash_token
from shared.settings import RelaisSettings
from shared.web.install import install_web
from shared.web.sessions import SessionConfig, SessionStore, csrf_token

pytestmark = pytest.mark.attack


def kernel_app(directory: Directory, settings: RelaisSettings):
    router = APIRouter(prefix="/discharge")

    @router.get("/whoami")
    def whoami(principal: Principal = Depends(current_principal)) -> dict:
        return {"organisation": principal.organisation_id}

    @router.post("/write")
    def write(principal: Principal = Depends(current_principal)) -> dict:
        return {"written_by": principal.organisation_id}

    app = create_service_app(
        service="discharge", title="t", description="d", routers=[router], max_body_bytes=10_000,
        ready_checks={}, capability={},
    )
    app.state.directory = directory
    install_web(app, "discharge", directory, settings)
    return app


@pytest.fixture
def relais(tmp_path):
    directory = Directory(f"sqlite:///{tmp_path / 'auth.sqlite'}")
    tokens = {
        "msp-a": directory.add("team", "msp-a", "MSP A"),
        "msp-b": directory.add("team", "msp-b", "MSP B"),
    }
    client = TestClient(kernel_app(directory, RelaisSettings(data_dir=tmp_path)), base_url="http://127.0.0.1")
    yield client, directory, tokens
    client.close()
    directory.close()


def sign_in(client: TestClient, token: str):
    form = client.get("/discharge/app/signin")
    nonce = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
    return client.post("/discharge/app/signin", data={"token": token, "csrf": nonce}, follow_redirects=False)


def page_csrf(client: TestClient) -> str:
    page = client.get("/discharge/app/worklist")
    return re.search(r'name="csrf-token" content="([^"]+)"', page.text).group(1)


def test_a_session_id_planted_before_sign_in_is_never_promoted(relais):
    client, directory, tokens = relais
    client.cookies.set("relais_session", "attacker-chosen-value", domain="127.0.0.1")
    assert client.get("/discharge/whoami").status_code == 401
    signed = sign_in(client, tokens["msp-a"])
    assert signed.status_code == 303
    issued = signed.cookies["relais_session"]
    assert issued != "attacker-chosen-value"
    # The attacker's own live session, planted in the victim's browser, is closed when the victim signs in.
    attacker = TestClient(client.app, base_url="http://127.0.0.1")
    sign_in(attacker, tokens["msp-b"])
    planted = attacker.cookies["relais_session"]
    client.cookies.clear()
    client.cookies.set("relais_session", planted, domain="127.0.0.1")
    signed = sign_in(client, tokens["msp-a"])
    assert signed.cookies["relais_session"] != planted
    assert client.get("/discharge/whoami").json() == {"organisation": "msp-a"}
    assert attacker.get("/discharge/whoami").status_code == 401
    # Only the hash of a session id is stored.
    with directory.engine.connect() as connection:
        stored = {row[0] for row in connection.exec_driver_sql("SELECT id_hash FROM web_session")}
    assert hash_token(signed.cookies["relais_session"]) in stored and signed.cookies["relais_session"] not in stored


def test_cookie_writes_need_the_csrf_token_of_their_own_session(relais):
    client, _, tokens = relais
    sign_in(client, tokens["msp-a"])
    token = page_csrf(client)
    assert client.post("/discharge/write").status_code == 403
    assert client.post("/discharge/write", headers={"X-CSRF-Token": "forged"}).status_code == 403
    other = TestClient(client.app, base_url="http://127.0.0.1")
    sign_in(other, tokens["msp-b"])
    assert client.post("/discharge/write", headers={"X-CSRF-Token": page_csrf(other)}).status_code == 403
    # Even the right token is refused when the browser says the request comes from another site.
    cross = {"X-CSRF-Token": token, "Sec-Fetch-Site": "cross-site"}
    assert client.post("/discharge/write", headers=cross).status_code == 403
    ok = client.post("/discharge/write", headers={"X-CSRF-Token": token, "Sec-Fetch-Site": "same-origin"})
    assert ok.status_code == 200 and ok.json() == {"written_by": "msp-a"}
    # Reads need no token; Bearer calls are unchanged (no cookie, no CSRF token, no Sec-Fetch-* rules).
    assert client.get("/discharge/whoami").json() == {"organisation": "msp-a"}
    bare = TestClient(client.app, base_url="http://127.0.0.1")
    assert bare.post("/discharge/write", headers={"Authorization": f"Bearer {tokens['msp-b']}"}).json() == {
        "written_by": "msp-b"
    }
    assert bare.post("/discharge/write").status_code == 401


def test_sign_in_and_sign_out_forms_are_protected_against_forgery(relais):
    client, _, tokens = relais
    # A sign-in posted from elsewhere carries no nonce matching the sign-in cookie (login CSRF).
    forged = client.post("/discharge/app/signin", data={"token": tokens["msp-b"], "csrf": "x"}, follow_redirects=False)
    assert forged.status_code == 403 and "relais_session" not in forged.cookies
    sign_in(client, tokens["msp-a"])
    refused = client.post("/discharge/app/signout", data={"csrf": "forged"}, follow_redirects=False)
    assert refused.status_code == 403 and client.get("/discharge/whoami").status_code == 200
    done = client.post("/discharge/app/signout", data={"csrf": page_csrf(client)}, follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == "/discharge/app/signin"
    assert client.get("/discharge/whoami").status_code == 401


def test_the_cookie_never_leaves_for_another_site_and_needs_https_outside_development(tmp_path):
    directory = Directory(f"sqlite:///{tmp_path / 'auth.sqlite'}")
    token = directory.add("team", "msp-a", "MSP A")
    cases = (("development", "relais_session", False), ("test", "__Host-relais_session", True))
    for environment, name, secure in cases:
        app = kernel_app(directory, RelaisSettings(data_dir=tmp_path, environment=environment))
        client = TestClient(app, base_url="https://127.0.0.1")
        signed = sign_in(client, token)
        (header,) = [h for h in signed.headers.get_list("set-cookie") if h.startswith(f"{name}=")]
        attributes = {part.strip().split("=")[0].lower() for part in header.split(";")[1:]}
        assert "httponly" in attributes and "samesite=strict" in header.lower() and "path=/" in header.lower()
        assert "domain" not in attributes  # host-only: never sent to a sibling host
        assert "max-age" in attributes  # it ends
        assert ("secure" in attributes) is secure
        client.close()
    directory.close()


def test_an_expired_idle_or_revoked_session_is_refused(tmp_path):
    directory = Directory(f"sqlite:///{tmp_path / 'auth.sqlite'}")
    directory.add("team", "msp-a", "MSP A")
    msp = directory.get("msp-a")
    now = [datetime(2026, 1, 5, 8, 0, tzinfo=UTC)]
    store = SessionStore(
        directory, SessionConfig(max_age=timedelta(hours=8), idle=timedelta(minutes=30)), clock=lambda: now[0]
    )
    idle = store.open(msp)
    now[0] += timedelta(minutes=31)
    assert store.authenticate(idle) is None
    # Active all day long, a session still ends at its absolute lifetime.
    busy = store.open(msp)
    for _ in range(16):
        now[0] += timedelta(minutes=29)
        assert store.authenticate(busy) is not None
    now[0] += timedelta(minutes=29)
    assert store.authenticate(busy) is None
    # Rotating the organisation's token ends its sessions at once.
    live = store.open(msp)
    assert store.authenticate(live) is not None
    directory.rotate("msp-a")
    assert store.authenticate(live) is None
    with directory.engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT count(*) FROM web_session").scalar() <= 1
    directory.close()


def test_an_expired_cookie_is_a_401_and_the_pages_send_to_sign_in(relais, tmp_path):
    client, directory, tokens = relais
    sign_in(client, tokens["msp-a"])
    with directory.engine.begin() as connection:
        connection.exec_driver_sql("UPDATE web_session SET expires_at = '2000-01-01 00:00:00'")
    answer = client.get("/discharge/whoami")
    assert answer.status_code == 401 and "sign in again" in answer.text
    page = client.get("/discharge/app/worklist", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"] == "/discharge/app/signin"


def test_sign_in_attempts_are_throttled_per_address(relais):
    client, _, tokens = relais
    for _ in range(10):
        assert sign_in(client, "rls_wrong").status_code == 401
    throttled = sign_in(client, tokens["msp-a"])  # even the right token waits
    assert throttled.status_code == 429 and int(throttled.headers["retry-after"]) > 0
    assert "relais_session" not in throttled.cookies


def test_csrf_tokens_are_bound_to_their_session():
    assert csrf_token("a") != csrf_token("b") and csrf_token("a") == csrf_token("a")
