"""Findings "no rate limit" and "memory growth without authentication", against the kernel app."""

from __future__ import annotations

import secrets
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from shared.api.limits import RateLimits
from shared.auth import Directory
from shared.events import Role
from tests.security.conftest import build_app, live_server

pytestmark = pytest.mark.attack


def test_an_organisation_over_its_budget_gets_429_with_retry_after(tmp_path):
    app = build_app(tmp_path, rate_limits=RateLimits("5/minute", ""))
    noisy, quiet = app.client("hospital"), app.client("other")
    statuses = [noisy.get("/kernel/items/a").status_code for _ in range(5)]
    assert statuses == [200] * 5
    refused = noisy.get("/kernel/items/a")
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.json()["resourceType"] == "OperationOutcome"
    assert refused.json()["issue"][0]["code"] == "throttled"
    assert quiet.get("/kernel/items/a").status_code == 200


def test_failed_authentications_are_throttled_per_address(tmp_path):
    app = build_app(tmp_path, rate_limits=RateLimits("", "3/minute"))
    guesser = app.client()
    for _ in range(3):
        guesser.headers["Authorization"] = f"Bearer rls_{secrets.token_urlsafe(32)}"
        assert guesser.get("/kernel/items/a").status_code == 401
    guesser.headers["Authorization"] = f"Bearer rls_{secrets.token_urlsafe(32)}"
    refused = guesser.post("/kernel/fhir/$process-message", content=b"{" * 10)
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) >= 1


def test_guessed_tokens_never_grow_the_cache_beyond_its_bound(tmp_path):
    directory = Directory(f"sqlite:///{tmp_path / 'auth.sqlite'}", cache_size=50, miss_cache_seconds=60)
    token = directory.add(Role.HOSPITAL, "010000001", "CHU")
    for _ in range(1000):
        assert directory.authenticate(f"rls_{secrets.token_urlsafe(32)}") is None
    assert directory.authenticate(token) is not None
    assert directory.cached_tokens <= 50 + 5
    assert directory.authenticate("x" * 10_000) is None
    directory.close()


def test_a_miss_is_not_cached_for_ever(tmp_path):
    directory = Directory(f"sqlite:///{tmp_path / 'auth.sqlite'}", miss_cache_seconds=0)
    assert directory.authenticate("rls_unknown") is None
    assert directory.cached_tokens == 0
    directory.close()


def test_abuse_run_noisy_caller_throttled_others_served_no_5xx(tmp_path):
    """About 2,000 requests over loopback HTTP: one noisy organisation, one ordinary one."""
    app = build_app(tmp_path, rate_limits=RateLimits("200/minute", "20/minute"))
    with live_server(app.app) as port:
        base = f"http://127.0.0.1:{port}/kernel/items/x"

        def burst(org: str, count: int) -> list[int]:
            headers = {"Authorization": f"Bearer {app.tokens[org]}"}
            with httpx.Client(timeout=30) as client:
                return [client.get(base, headers=headers).status_code for _ in range(count)]

        with ThreadPoolExecutor(max_workers=4) as pool:
            noisy = [pool.submit(burst, "hospital", 600) for _ in range(3)]
            quiet = pool.submit(burst, "other", 150)
            noisy_statuses = [status for future in noisy for status in future.result()]
            quiet_statuses = quiet.result()
    assert noisy_statuses.count(429) == 1600
    assert noisy_statuses.count(200) == 200
    assert quiet_statuses == [200] * 150
    assert not any(status >= 500 for status in noisy_statuses + quiet_statuses)
