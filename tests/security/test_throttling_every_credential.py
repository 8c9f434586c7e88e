"""Issue 19 item 5: rate limits and sign-in throttling hold whatever the credential and whatever the headers.

Every authenticated request counts against its organisation's budget (Bearer or page session); a forwarded
address is believed only from a listed proxy; a successful sign-in clears no failures; an unknown session id
is a failed authentication. Rate limits live in process memory, so the store does not matter here."""

from __future__ import annotations

import re
import secrets

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI
from fastapi.testclient import TestClient

from shared.api.app import create_service_app
from shared.api.limits import RateLimits
from shared.auth import Directory, Principal, current_principal
from shared.settings import RelaisSettings
from shared.web.install import install_web
from tests.security.conftest import live_server

pytestmark = pytest.mark.attack


def paged_app(tmp_path, rate_limits: RateLimits) -> tuple[FastAPI, Directory, str]:
    """The kernel with its page sessions (the discharge pages) and one protected route."""
    router = APIRouter(prefix="/discharge")

    @router.get("/whoami")
    def whoami(principal: Principal = Depends(current_principal)) -> dict:
        return {"organisation": principal.organisation_id}

    app = create_service_app(
        service="discharge", title="t", description="d", routers=[router], rate_limits=rate_limits,
        ready_checks={}, capability={},
    )
    directory = Directory(f"sqlite:///{tmp_path / 'auth.sqlite'}")
    app.state.directory = directory
    install_web(app, "discharge", directory, RelaisSettings(data_dir=tmp_path, environment="development"))
    return app, directory, directory.add("team", "msp-a", "MSP A")


def sign_in(client: TestClient, token: str):
    form = client.get("/discharge/app/signin")
    nonce = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
    return client.post("/discharge/app/signin", data={"token": token, "csrf": nonce}, follow_redirects=False)


def test_requests_with_a_page_session_spend_the_organisations_budget(tmp_path):
    app, directory, token = paged_app(tmp_path, RateLimits("30/minute", ""))
    with TestClient(app, base_url="http://127.0.0.1") as browser:
        assert sign_in(browser, token).status_code == 303
        statuses = [browser.get("/discharge/whoami").status_code for _ in range(40)]
        assert statuses[:30] == [200] * 30
        assert set(statuses[30:]) == {429}
        # The budget is the organisation's: its Bearer calls are refused as well.
        bearer = browser.get("/discharge/whoami", headers={"Authorization": f"Bearer {token}"})
        assert bearer.status_code == 429 and int(bearer.headers["Retry-After"]) >= 1
    directory.close()


def test_random_session_ids_count_as_failed_authentications(tmp_path):
    app, directory, token = paged_app(tmp_path, RateLimits("", "3/minute"))
    with TestClient(app, base_url="http://127.0.0.1") as guesser:
        for _ in range(3):
            guesser.cookies.set("relais_session", secrets.token_urlsafe(32))
            assert guesser.get("/discharge/whoami").status_code == 401
        guesser.cookies.set("relais_session", secrets.token_urlsafe(32))
        refused = guesser.get("/discharge/whoami")
        assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
        # Even a valid token waits now: the address spent its failed-authentication budget.
        guesser.cookies.clear()
        assert guesser.get("/discharge/whoami", headers={"Authorization": f"Bearer {token}"}).status_code == 429
    directory.close()


def test_a_successful_sign_in_does_not_clear_the_addresss_failures(tmp_path):
    app, directory, token = paged_app(tmp_path, RateLimits("", ""))
    with TestClient(app, base_url="http://127.0.0.1") as guesser:
        for _ in range(9):
            assert sign_in(guesser, "rls_wrong").status_code == 401
        assert sign_in(guesser, token).status_code == 303  # the guesser's own valid token
        assert sign_in(guesser, "rls_wrong").status_code == 401  # the tenth failure in the window
        throttled = sign_in(guesser, "rls_wrong-again")
        assert throttled.status_code == 429 and int(throttled.headers["Retry-After"]) > 0
    directory.close()


def _guess(port: int, forwarded: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer rls_{secrets.token_urlsafe(32)}", "X-Forwarded-For": forwarded}
    return httpx.get(f"http://127.0.0.1:{port}/discharge/whoami", headers=headers, timeout=10)


def test_a_blocked_client_cannot_pick_a_new_address_with_x_forwarded_for(tmp_path):
    app, directory, _ = paged_app(tmp_path, RateLimits("", "3/minute"))
    with live_server(app) as port:
        statuses = [_guess(port, f"203.0.113.{n}").status_code for n in range(1, 7)]
    assert statuses[:3] == [401] * 3
    assert set(statuses[3:]) == {429}
    directory.close()


def test_a_listed_proxy_is_believed_and_each_forwarded_client_counts_apart(tmp_path):
    app, directory, _ = paged_app(tmp_path, RateLimits("", "3/minute"))
    with live_server(app, trusted_proxies="127.0.0.0/8") as port:
        blocked = [_guess(port, "203.0.113.7").status_code for _ in range(4)]
        other = _guess(port, "203.0.113.8").status_code
    assert blocked == [401, 401, 401, 429]
    assert other == 401  # another client behind the same proxy is not blocked by the first
    directory.close()


def test_the_trusted_proxies_setting_is_empty_by_default(monkeypatch):
    monkeypatch.delenv("RELAIS_TRUSTED_PROXIES", raising=False)
    assert RelaisSettings().trusted_proxies == []
    monkeypatch.setenv("RELAIS_TRUSTED_PROXIES", "10.0.0.0/8, 192.168.1.1")
    assert RelaisSettings().trusted_proxies == ["10.0.0.0/8", "192.168.1.1"]
    monkeypatch.setenv("RELAIS_TRUSTED_PROXIES", "not-a-network")
    with pytest.raises(ValueError, match="trusted_proxies"):
        RelaisSettings()
