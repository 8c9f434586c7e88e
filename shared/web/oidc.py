"""The OpenID Connect client of the pages, in the Pro Santé Connect profile (Authlib and its JOSE library).

Authorization code with PKCE (S256), `state` and `nonce`, the `acr_values` Pro Santé Connect asks for ("eidas1":
a CPS or e-CPS card); the ID token's signature (the provider's published keys), issuer, audience, expiry, nonce
and acr are checked; the person comes from userinfo: `SubjectNameID` (the IDNPS, "8" + RPPS) and the practice
structures of `SubjectRefPro.exercices[].activities[]`.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

import requests
from authlib.integrations.base_client import OAuthError
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from shared.members import rpps_of
from shared.settings import RelaisSettings

PRIVATE_KEY_JWT = "private_key_jwt"
CLIENT_SECRET_BASIC = "client_secret_basic"  # noqa: S105 - the name of a method, not a secret
ID_TOKEN_ALGORITHMS = ["RS256", "PS256", "ES256"]
METADATA_SECONDS = 3600.0
CLOCK_LEEWAY_SECONDS = 60
# Identifiers of a practice structure in SubjectRefPro (FINESS site, SIRET site, the directory's technical id).
STRUCTURE_KEYS = ("numeroFinessSite", "numeroSiretSite", "identifiantTechniqueDeLaStructure")


class SignInFailed(Exception):
    """A sign-in the provider or Relais refused; `reason` is a short stable code, safe to log and audit."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Authorization:
    url: str
    state: str
    nonce: str
    code_verifier: str


@dataclass(frozen=True)
class Identity:
    rpps: str
    name: str
    structures: tuple[str, ...]


@dataclass(frozen=True)
class ProviderMetadata:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    userinfo_endpoint: str
    jwks_uri: str


def identity_from_userinfo(userinfo: dict[str, Any]) -> Identity:
    """The person named by Pro Santé Connect's userinfo; SignInFailed("no-rpps") without a usable RPPS."""
    rpps = rpps_of(str(userinfo.get("SubjectNameID") or ""))
    if rpps is None:
        raise SignInFailed("no-rpps")
    raw_reference = userinfo.get("SubjectRefPro")
    reference: dict[str, Any] = raw_reference if isinstance(raw_reference, dict) else {}
    exercises = [item for item in reference.get("exercices") or [] if isinstance(item, dict)]
    given = str(userinfo.get("given_name") or next((e.get("prenomDexercice") for e in exercises), "") or "")
    family = str(userinfo.get("family_name") or next((e.get("nomDexercice") for e in exercises), "") or "")
    structures = {
        str(activity[key])
        for exercise in exercises
        for activity in exercise.get("activities") or []
        if isinstance(activity, dict)
        for key in STRUCTURE_KEYS
        if activity.get(key)
    }
    name = " ".join(part for part in (given.strip(), family.strip()) if part) or f"RPPS {rpps}"
    return Identity(rpps, name[:300], tuple(sorted(structures)))


class OidcClient:
    """One configured provider; discovery and keys are cached, keys refetched once for an unknown key id."""

    def __init__(self, settings: RelaisSettings) -> None:
        if not settings.oidc_configured:
            raise ValueError("RELAIS_OIDC_ISSUER, RELAIS_OIDC_CLIENT_ID and RELAIS_OIDC_REDIRECT_URL are needed")
        self.issuer = str(settings.oidc_issuer).rstrip("/")
        self.client_id = str(settings.oidc_client_id)
        self.redirect_url = str(settings.oidc_redirect_url)
        self.scopes = settings.oidc_scopes
        self.acr = settings.oidc_acr
        self.timeout = settings.oidc_timeout_seconds
        self._secret = settings.oidc_client_secret
        key_file = settings.oidc_private_key_file
        self._private_key = key_file.read_text(encoding="utf-8") if key_file else None
        self._lock = threading.Lock()
        self._metadata: tuple[float, ProviderMetadata] | None = None
        self._keys: KeySet | None = None

    def redirect_url_for(self, service: str) -> str:
        # One registered callback per deployment; a service served alone answers on its own prefix.
        return self.redirect_url.replace("{service}", service)

    def _get(self, url: str) -> dict[str, Any]:
        try:
            response = requests.get(url, timeout=self.timeout, allow_redirects=False)
            response.raise_for_status()
            body = response.json()
        except (requests.RequestException, ValueError) as exc:
            raise SignInFailed("provider-unreachable") from exc
        if not isinstance(body, dict):
            raise SignInFailed("provider-answer")
        return body

    def metadata(self) -> ProviderMetadata:
        with self._lock:
            if self._metadata and self._metadata[0] > time.monotonic():
                return self._metadata[1]
        document = self._get(f"{self.issuer}/.well-known/openid-configuration")
        if str(document.get("issuer", "")).rstrip("/") != self.issuer:
            raise SignInFailed("issuer-mismatch")
        try:
            metadata = ProviderMetadata(
                issuer=str(document["issuer"]),
                authorization_endpoint=str(document["authorization_endpoint"]),
                token_endpoint=str(document["token_endpoint"]),
                userinfo_endpoint=str(document["userinfo_endpoint"]),
                jwks_uri=str(document["jwks_uri"]),
            )
        except KeyError as exc:
            raise SignInFailed("provider-metadata") from exc
        with self._lock:
            self._metadata = (time.monotonic() + METADATA_SECONDS, metadata)
        return metadata

    def _key_set(self, refresh: bool = False) -> KeySet:
        with self._lock:
            if self._keys is not None and not refresh:
                return self._keys
        document = self._get(self.metadata().jwks_uri)
        keys = KeySet.import_key_set({"keys": list(document.get("keys") or [])})
        with self._lock:
            self._keys = keys
        return keys

    def _session(self, service: str) -> OAuth2Session:
        if self._private_key:
            session = OAuth2Session(
                self.client_id, self._private_key, scope=self.scopes, redirect_uri=self.redirect_url_for(service),
                token_endpoint_auth_method=PRIVATE_KEY_JWT, code_challenge_method="S256",
            )
            session.register_client_auth_method(PrivateKeyJWT(self.metadata().token_endpoint))
            return session
        return OAuth2Session(
            self.client_id, self._secret, scope=self.scopes, redirect_uri=self.redirect_url_for(service),
            token_endpoint_auth_method=CLIENT_SECRET_BASIC, code_challenge_method="S256",
        )

    def authorization(self, service: str) -> Authorization:
        state, nonce, verifier = (secrets.token_urlsafe(32) for _ in range(3))
        with self._session(service) as session:
            url, _ = session.create_authorization_url(
                self.metadata().authorization_endpoint, state=state, code_verifier=verifier, nonce=nonce,
                acr_values=self.acr,
            )
        return Authorization(url, state, nonce, verifier)

    def sign_in(self, service: str, code: str, code_verifier: str, nonce: str) -> Identity:
        """Exchange the code, check the ID token, read userinfo; SignInFailed with a reason otherwise."""
        metadata = self.metadata()
        with self._session(service) as session:
            try:
                token = session.fetch_token(
                    metadata.token_endpoint, code=code, code_verifier=code_verifier, timeout=self.timeout
                )
            except (OAuthError, requests.RequestException, ValueError) as exc:
                raise SignInFailed("code-refused") from exc
            claims = self.validate_id_token(str(token.get("id_token") or ""), nonce)
            try:
                response = session.get(metadata.userinfo_endpoint, timeout=self.timeout, allow_redirects=False)
                response.raise_for_status()
                userinfo = response.json()
            except (requests.RequestException, ValueError) as exc:
                raise SignInFailed("userinfo") from exc
        if not isinstance(userinfo, dict) or userinfo.get("sub") != claims.get("sub"):
            raise SignInFailed("userinfo-subject")  # OpenID Connect Core 5.3.2: the same sub, or ignore userinfo
        return identity_from_userinfo(userinfo)

    def validate_id_token(self, id_token: str, nonce: str) -> dict[str, Any]:
        if not id_token:
            raise SignInFailed("no-id-token")
        try:
            try:
                decoded = jwt.decode(id_token, self._key_set(), algorithms=ID_TOKEN_ALGORITHMS)
            except JoseError:
                # The provider may have rolled its keys: fetch them once more before refusing.
                decoded = jwt.decode(id_token, self._key_set(refresh=True), algorithms=ID_TOKEN_ALGORITHMS)
            registry = jwt.JWTClaimsRegistry(
                leeway=CLOCK_LEEWAY_SECONDS,
                iss={"essential": True, "value": self.metadata().issuer},
                aud={"essential": True, "value": self.client_id},
                exp={"essential": True},
                sub={"essential": True},
                nonce={"essential": True, "value": nonce},
            )
            registry.validate(decoded.claims)
        except (JoseError, ValueError) as exc:
            raise SignInFailed("id-token") from exc
        claims = dict(decoded.claims)
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        if len(audiences) > 1 and claims.get("azp") != self.client_id:
            raise SignInFailed("id-token")
        if self.acr and claims.get("acr") != self.acr:
            raise SignInFailed("acr")
        return claims
