"""The ID token checks of the OpenID Connect client, on tokens signed here with a key the client trusts (or not):
signature, issuer, audience (and azp), expiry, nonce and the acr Pro Santé Connect asks for."""

from __future__ import annotations

import time

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from shared.settings import RelaisSettings
from shared.web.oidc import OidcClient, ProviderMetadata, SignInFailed

ISSUER = "https://auth.example.test/realms/psc"
TRUSTED = RSAKey.generate_key(2048, parameters={"kid": "trusted"}, private=True)
STRANGER = RSAKey.generate_key(2048, parameters={"kid": "trusted"}, private=True)  # same kid, another key


@pytest.fixture
def client(monkeypatch) -> OidcClient:
    settings = RelaisSettings(
        oidc_issuer=ISSUER, oidc_client_id="relais", oidc_client_secret="s", oidc_redirect_url="https://r/cb"
    )
    oidc = OidcClient(settings)
    metadata = ProviderMetadata(ISSUER, f"{ISSUER}/auth", f"{ISSUER}/token", f"{ISSUER}/userinfo", f"{ISSUER}/jwks")
    oidc._metadata = (time.monotonic() + 3600, metadata)
    public = KeySet.import_key_set({"keys": [TRUSTED.as_dict(private=False)]})
    oidc._keys = public
    # A refetch of the keys (after a failed signature) finds the same trusted set, never the network.
    monkeypatch.setattr(oidc, "_get", lambda url: {"keys": [TRUSTED.as_dict(private=False)]})
    return oidc


def token(key: RSAKey = TRUSTED, **changes) -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": "relais", "sub": "f:550dc1c8:8100012345678", "exp": now + 300, "iat": now,
              "nonce": "n-1", "acr": "eidas1", **changes}
    claims = {name: value for name, value in claims.items() if value is not None}
    return jwt.encode({"alg": "RS256", "kid": "trusted"}, claims, key)


def test_a_well_formed_token_is_accepted(client):
    assert client.validate_id_token(token(), "n-1")["sub"] == "f:550dc1c8:8100012345678"


@pytest.mark.attack
@pytest.mark.parametrize(
    ("changes", "nonce", "reason"),
    [
        ({"iss": "https://evil.example.test"}, "n-1", "id-token"),
        ({"aud": "another-service"}, "n-1", "id-token"),
        ({"aud": ["relais", "another-service"], "azp": "another-service"}, "n-1", "id-token"),
        ({"exp": int(time.time()) - 3600}, "n-1", "id-token"),
        ({}, "another-nonce", "id-token"),
        ({"nonce": None}, "n-1", "id-token"),
        ({"acr": "eidas0"}, "n-1", "acr"),
        ({"acr": None}, "n-1", "acr"),
    ],
    ids=["issuer", "audience", "azp", "expired", "nonce", "no-nonce", "weaker-acr", "no-acr"],
)
def test_a_token_failing_one_check_is_refused(client, changes, nonce, reason):
    with pytest.raises(SignInFailed) as refused:
        client.validate_id_token(token(**changes), nonce)
    assert refused.value.reason == reason


@pytest.mark.attack
def test_a_token_signed_by_another_key_is_refused(client):
    with pytest.raises(SignInFailed) as refused:
        client.validate_id_token(token(STRANGER), "n-1")
    assert refused.value.reason == "id-token"


@pytest.mark.attack
def test_an_unsigned_token_is_refused(client):
    header = "eyJhbGciOiJub25lIn0"  # {"alg":"none"}
    body = token().split(".")[1]
    with pytest.raises(SignInFailed):
        client.validate_id_token(f"{header}.{body}.", "n-1")
