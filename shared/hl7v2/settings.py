"""Settings of the MLLP listener (RELAIS_MLLP_*): port, limits, deadlines, TLS."""

from __future__ import annotations

import ssl
from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["MllpSettings", "server_tls_context"]


class MllpSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RELAIS_MLLP_", env_file=".env", extra="ignore")

    port: int | None = Field(default=None, ge=0, le=65535)  # None: no listener
    host: str = "127.0.0.1"
    # One frame's bytes at most (a PAM message is a few kB); a larger frame closes the connection.
    max_message_bytes: int = Field(default=1_000_000, gt=1000)
    # A connection with no frame started for this long is closed; a frame must arrive whole within read_seconds.
    idle_seconds: float = Field(default=300.0, gt=0)
    read_seconds: float = Field(default=30.0, gt=0)
    max_connections: int = Field(default=200, ge=1)
    # Threads that parse and commit (never the event loop); messages of one connection stay in order.
    workers: int = Field(default=4, ge=1)
    # MLLP over TLS: the server's certificate and key, and the CA that signs the hospitals' client certificates.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_ca: Path | None = None
    # How long the directory's HL7 bindings are cached (a new facility or network is seen after this long).
    bindings_refresh_seconds: float = Field(default=30.0, ge=0)
    # Stored ACKs answer resends of the same MSH-10; after this many days a resend is processed as new (0: never).
    ack_retention_days: float = Field(default=90.0, ge=0)

    @model_validator(mode="after")
    def _tls_complete(self) -> MllpSettings:
        given = [self.tls_cert, self.tls_key, self.tls_ca]
        if any(given) and not all(given):
            raise ValueError("MLLP over TLS needs RELAIS_MLLP_TLS_CERT, RELAIS_MLLP_TLS_KEY and RELAIS_MLLP_TLS_CA")
        return self

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None


def server_tls_context(settings: MllpSettings) -> ssl.SSLContext | None:
    """TLS 1.2+ with a client certificate required, signed by the configured CA; None for plain MLLP."""
    if not settings.tls or settings.tls_cert is None or settings.tls_ca is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(settings.tls_ca))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_cert_chain(str(settings.tls_cert), str(settings.tls_key) if settings.tls_key else None)
    return context
