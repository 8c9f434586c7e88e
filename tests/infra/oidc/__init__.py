"""A real OpenID provider for the tests: oidc-provider (npm, installed by `scripts/install.sh --test` into this
folder) run by provider.mjs on a loopback port, issuing Pro Santé Connect-shaped claims for the users given."""

from __future__ import annotations

import json
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.infra.wait import wait_for

HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def psc_user(rpps: str, given: str, family: str, structures: list[str]) -> dict[str, Any]:
    """Userinfo claims shaped like Pro Santé Connect's: IDNPS "8" + RPPS, and the practice structures."""
    return {
        "SubjectNameID": f"8{rpps}",
        "given_name": given,
        "family_name": family,
        "preferred_username": f"8{rpps}",
        "SubjectRefPro": {
            "codeCivilite": "DR",
            "exercices": [
                {
                    "codeProfession": "10",
                    "codeCategorieProfessionnelle": "C",
                    "nomDexercice": family,
                    "prenomDexercice": given,
                    "activities": [
                        {"codeModeExercice": "L", "numeroFinessSite": structure, "raisonSocialeSite": structure}
                        for structure in structures
                    ],
                }
            ],
        },
    }


@dataclass
class Client:
    client_id: str
    client_secret: str
    redirect_uris: list[str]
    # More client metadata for the provider, e.g. token_endpoint_auth_method and jwks for private_key_jwt.
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class OidcProvider:
    issuer: str
    clients: list[Client]


@contextmanager
def oidc_provider(clients: list[Client], users: dict[str, dict[str, Any]], port: int = 0) -> Iterator[OidcProvider]:
    node = shutil.which("node")
    if node is None or not (HERE / "node_modules" / "oidc-provider").is_dir():
        raise AssertionError("oidc-provider is missing: run scripts/install.sh --test (npm ci in tests/infra/oidc)")
    port = port or free_port()
    issuer = f"http://127.0.0.1:{port}"
    config = {
        "port": port,
        "issuer": issuer,
        "clients": [
            {
                "client_id": client.client_id,
                "client_secret": client.client_secret,
                "redirect_uris": client.redirect_uris,
                "grant_types": ["authorization_code"],
                "response_types": ["code"],
                **client.extra,
            }
            for client in clients
        ],
        "users": users,
    }
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "provider.json"
        path.write_text(json.dumps(config), encoding="utf-8")
        log = Path(folder) / "provider.log"
        with log.open("w") as output:
            process = subprocess.Popen([node, str(HERE / "provider.mjs"), str(path)], stdout=output, stderr=output)
            try:
                wait_for(
                    lambda: "ready" in log.read_text(), timeout=30, message=lambda: f"provider: {log.read_text()}"
                )
                yield OidcProvider(issuer, clients)
            finally:
                process.terminate()
                process.wait(timeout=10)


def client(redirect_uris: list[str], client_id: str = "relais") -> Client:
    return Client(client_id, secrets.token_urlsafe(24), redirect_uris)
