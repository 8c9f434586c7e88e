"""Settings from the environment (pydantic-settings): one base class, one class per service."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, ClassVar, Literal

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEV_SECRET = "relais-development-secret-do-not-use"  # noqa: S105 - refused outside development
DEFAULT_RATE_LIMIT_PER_ORGANISATION = "100/second;6000/minute"
DEFAULT_RATE_LIMIT_FAILED_AUTH = "20/minute;200/hour"


class RelaisSettings(BaseSettings):
    """What every service shares: environment, data directory, bus, secrets, limits."""

    model_config = SettingsConfigDict(env_prefix="RELAIS_", env_file=".env", extra="ignore", populate_by_name=True)

    service: ClassVar[str] = "relais"

    environment: Literal["development", "test", "production"] = "development"
    data_dir: Path = Path(".relais")
    # Pseudonymous patient keys are HMACs under this secret; changing it re-keys every patient.
    secret_key: str = DEV_SECRET
    kafka_bootstrap_servers: str | None = Field(
        default=None, validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "RELAIS_KAFKA_BOOTSTRAP_SERVERS")
    )
    # Old brokers (Apache Kafka 0.9) cannot be probed for their version: name it, e.g. "0.9".
    kafka_api_version: str | None = None
    kafka_session_timeout_ms: int = 10_000
    # Longest pause between two polls of a consumer, and how long a rebalance waits for a stuck member.
    kafka_max_poll_interval_ms: int = 30_000
    # Partitions and configs of the topics the bus creates (default: the repository's deploy/kafka/topics.yaml).
    kafka_topics_file: Path | None = None
    # Authentication to a secured cluster (each service has its own principal; see deploy/kafka/acls.yaml).
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: str | None = None
    kafka_ssl_cafile: str | None = None
    # The embedded log (used when no Kafka is configured) lives in its own database.
    bus_database_url: str | None = None
    bus_database_schema: str | None = None
    auth_database_url: str | None = None
    auth_database_schema: str | None = None
    max_body_bytes: int = 1_000_000
    relay_batch_size: int = 200
    relay_idle_seconds: float = 0.05
    consumer_max_attempts: int = 5
    # Deployments sharing one Kafka cluster (or test runs sharing a broker) keep their groups apart.
    consumer_group_prefix: str = "relais"
    # Web page sessions (RELAIS_SESSION_*): an absolute lifetime and an idle timeout, both ending the session.
    session_max_hours: float = Field(default=8.0, gt=0)
    session_idle_minutes: float = Field(default=30.0, gt=0)
    # Failed sign-ins allowed per client address in the window before 429 (RELAIS_SIGNIN_*).
    signin_max_failures: int = Field(default=10, ge=1)
    signin_window_seconds: float = Field(default=900.0, gt=0)
    # Sign-in with the organisation's token on the pages: for development; unset means "not in production".
    token_signin: bool | None = None
    # People sign in with OpenID Connect in the Pro Santé Connect profile (RELAIS_OIDC_*; docs/operations.md).
    oidc_issuer: str | None = None
    oidc_client_id: str | None = None
    oidc_client_secret: str | None = None
    # Instead of a secret: a PEM private key whose public half the provider knows (private_key_jwt).
    oidc_private_key_file: Path | None = None
    # The callback registered with the provider: https://HOST/discharge/app/oidc/callback (one per service).
    oidc_redirect_url: str | None = None
    oidc_scopes: str = "openid scope_all"
    oidc_acr: str = "eidas1"
    oidc_timeout_seconds: float = Field(default=10.0, gt=0, le=60)

    # --- abuse resistance (docs/security.md) ---
    # Outbound calls: networks (CIDR, comma-separated) reachable besides public addresses; empty everywhere by
    # default, tests and local development list e.g. 127.0.0.0/8,::1/128. Metadata addresses stay refused.
    outbound_allowed_networks: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Reverse proxies (CIDR, comma-separated) whose X-Forwarded-For/-Proto are believed (RELAIS_TRUSTED_PROXIES);
    # empty by default: the client address is the peer's, whatever headers it sends.
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Plain http callback URLs: None means "only in development".
    outbound_allow_http: bool | None = None
    outbound_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    outbound_max_response_bytes: int = Field(default=4096, ge=0, le=1_000_000)
    # Request limits, checked before any FHIR model sees the body.
    max_bundle_entries: int = Field(default=1000, ge=1)
    max_json_depth: int = Field(default=32, ge=2, le=200)
    max_json_string_chars: int = Field(default=100_000, ge=1)
    max_json_array_items: int = Field(default=5000, ge=1)
    # A client must send its headers, then its whole body, within these (slow senders hold a connection).
    http_header_timeout_seconds: float = Field(default=10.0, gt=0)
    # Liveness on its own port, answered by another process from the event loop's heartbeat (unset: only /healthz).
    liveness_port: int | None = Field(default=None, ge=1, le=65535)
    liveness_stale_seconds: float = Field(default=10.0, gt=0)
    http_body_timeout_seconds: float = Field(default=30.0, gt=0)
    # An oversized body is read and discarded up to this much so the client sees the 413; past it, close.
    http_max_drain_bytes: int = Field(default=32_000_000, ge=0)
    # Rate limits (`limits` syntax, ";"-separated; "" disables), per service: requests per organisation, and
    # failed authentications per client address. Unset: the defaults below, except in the test environment
    # (suites hammer one app with one organisation), where they are off unless set.
    rate_limit_per_organisation: str | None = None
    rate_limit_failed_auth: str | None = None
    # Token cache: positive answers for token_cache_seconds, unknown tokens only briefly, bounded in size.
    token_cache_size: int = Field(default=10_000, ge=1)
    token_cache_seconds: float = Field(default=30.0, ge=0)
    token_miss_cache_seconds: float = Field(default=2.0, ge=0)
    # The largest envelope the bus takes (stay under the producer's max_request_size, 1 MiB by default).
    bus_max_message_bytes: int = Field(default=900_000, ge=1000)
    # Supervised workers: restart delay doubles from 0.5 s up to this.
    worker_restart_max_seconds: float = Field(default=30.0, gt=0)
    # Retention (days; 0 keeps forever), and how often the purge runs.
    retention_outbox_days: float = Field(default=7.0, ge=0)
    retention_inbox_days: float = Field(default=30.0, ge=0)
    retention_dead_letter_days: float = Field(default=90.0, ge=0)
    retention_audit_days: float = Field(default=1825.0, ge=0)
    retention_deliveries_days: float = Field(default=30.0, ge=0)
    retention_notifications_days: float = Field(default=180.0, ge=0)
    retention_timers_days: float = Field(default=30.0, ge=0)
    retention_interval_seconds: float = Field(default=3600.0, gt=0)
    retention_batch_size: int = Field(default=1000, ge=1)

    # MSSanté addresses must be in one of these domains or their subdomains (RELAIS_MSSANTE_DOMAINS, comma-separated).
    mssante_domains: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["mssante.fr"])

    @field_validator("mssante_domains", mode="before")
    @classmethod
    def _split_domains(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip().lower() for part in value.split(",") if part.strip()]
        return value

    @field_validator("outbound_allowed_networks", "trusted_proxies", mode="before")
    @classmethod
    def _split_networks(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("outbound_allowed_networks", "trusted_proxies")
    @classmethod
    def _valid_networks(cls, value: list[str]) -> list[str]:
        import ipaddress

        for network in value:
            ipaddress.ip_network(network, strict=False)
        return value

    @property
    def resolved_rate_limit_per_organisation(self) -> str:
        if self.rate_limit_per_organisation is not None:
            return self.rate_limit_per_organisation
        return "" if self.environment == "test" else DEFAULT_RATE_LIMIT_PER_ORGANISATION

    @property
    def resolved_rate_limit_failed_auth(self) -> str:
        if self.rate_limit_failed_auth is not None:
            return self.rate_limit_failed_auth
        return "" if self.environment == "test" else DEFAULT_RATE_LIMIT_FAILED_AUTH

    @property
    def resolved_outbound_allow_http(self) -> bool:
        if self.outbound_allow_http is None:
            return self.environment == "development"
        return self.outbound_allow_http

    @property
    def resolved_token_signin(self) -> bool:
        if self.token_signin is None:
            return self.environment != "production"
        return self.token_signin

    @property
    def oidc_configured(self) -> bool:
        return bool(self.oidc_issuer and self.oidc_client_id and self.oidc_redirect_url)

    @property
    def uses_kafka(self) -> bool:
        return bool(self.kafka_bootstrap_servers)

    @property
    def kafka_security(self) -> dict[str, str]:
        """kafka-python client options for the configured security protocol (empty for PLAINTEXT)."""
        options: dict[str, str] = {"security_protocol": self.kafka_security_protocol}
        if self.kafka_sasl_mechanism:
            options["sasl_mechanism"] = self.kafka_sasl_mechanism
            options["sasl_plain_username"] = self.kafka_sasl_username or ""
            options["sasl_plain_password"] = self.kafka_sasl_password or ""
        if self.kafka_ssl_cafile:
            options["ssl_cafile"] = self.kafka_ssl_cafile
        return options if self.kafka_security_protocol != "PLAINTEXT" else {}

    @property
    def kafka_api_version_tuple(self) -> tuple[int, ...] | None:
        if not self.kafka_api_version:
            return None
        return tuple(int(part) for part in self.kafka_api_version.split("."))

    def sqlite_url(self, name: str) -> str:
        return f"sqlite:///{(self.data_dir / f'{name}.sqlite').as_posix()}"

    @property
    def resolved_bus_url(self) -> str:
        return self.bus_database_url or self.sqlite_url("bus")

    @property
    def resolved_auth_url(self) -> str:
        return self.auth_database_url or self.sqlite_url("auth")

    @model_validator(mode="after")
    def _refuse_unsafe_defaults_outside_development(self) -> RelaisSettings:
        if self.environment == "production" and (self.secret_key == DEV_SECRET or len(self.secret_key) < 32):
            raise ValueError("RELAIS_SECRET_KEY must be set to a secret of at least 32 characters in production")
        return self


class ServiceSettings(RelaisSettings):
    """A service's own database; subclasses read `RELAIS_<SERVICE>_DATABASE_URL` and `..._SCHEMA`."""

    database_url: str | None = None
    database_schema: str | None = None

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or self.sqlite_url(self.service)

    @model_validator(mode="after")
    def _refuse_sqlite_in_production(self) -> ServiceSettings:
        if self.environment == "production" and self.resolved_database_url.startswith("sqlite"):
            raise ValueError(f"RELAIS_{self.service.upper()}_DATABASE_URL must name a server database in production")
        return self


def _env(service: str, name: str) -> AliasChoices:
    return AliasChoices(f"RELAIS_{service.upper()}_{name}", name.lower())


class AdmissionsSettings(ServiceSettings):
    service: ClassVar[str] = "admissions"
    database_url: str | None = Field(default=None, validation_alias=_env("admissions", "DATABASE_URL"))
    database_schema: str | None = Field(default=None, validation_alias=_env("admissions", "DATABASE_SCHEMA"))
    # A change of treating team the current team does not answer goes to the new team after this long.
    team_change_expiry_hours: float = Field(
        default=72.0, gt=0, validation_alias=_env("admissions", "TEAM_CHANGE_EXPIRY_HOURS")
    )
    # How often the admissions worker looks for change-of-team requests that have expired.
    team_change_interval_seconds: float = Field(
        default=30.0, gt=0, validation_alias=_env("admissions", "TEAM_CHANGE_INTERVAL_SECONDS")
    )
    # After a declined (or withdrawn) change-of-team request, the same team asks again for that patient only
    # after this long: the current team is not notified over and over.
    team_change_quiet_hours: float = Field(
        default=168.0, ge=0, validation_alias=_env("admissions", "TEAM_CHANGE_QUIET_HOURS")
    )
    # A team's patient list (panel): lines per request, how long an upload's confirmation lasts, the notice before.
    panel_max_members: int = Field(
        default=10_000, ge=1, le=100_000, validation_alias=_env("admissions", "PANEL_MAX_MEMBERS")
    )
    panel_confirmation_days: float = Field(
        default=365.0, gt=0, validation_alias=_env("admissions", "PANEL_CONFIRMATION_DAYS")
    )
    panel_notice_days: float = Field(default=30.0, ge=0, validation_alias=_env("admissions", "PANEL_NOTICE_DAYS"))
    panel_interval_seconds: float = Field(
        default=3600.0, gt=0, validation_alias=_env("admissions", "PANEL_INTERVAL_SECONDS")
    )


class DischargeSettings(ServiceSettings):
    service: ClassVar[str] = "discharge"
    database_url: str | None = Field(default=None, validation_alias=_env("discharge", "DATABASE_URL"))
    database_schema: str | None = Field(default=None, validation_alias=_env("discharge", "DATABASE_SCHEMA"))
    # A handoff nobody answers expires after this long, and the CPTS is asked to find a team.
    handoff_expiry_hours: float = Field(default=48.0, gt=0, validation_alias=_env("discharge", "HANDOFF_EXPIRY_HOURS"))
    # After a missed follow-up the team referent has this long before the CPTS (and DAC) are told.
    followup_grace_hours: float = Field(default=48.0, ge=0, validation_alias=_env("discharge", "FOLLOWUP_GRACE_HOURS"))
    # The team referent is reminded (followup.due) this long before a follow-up deadline; 0 turns it off.
    followup_reminder_hours: float = Field(
        default=24.0, ge=0, validation_alias=_env("discharge", "FOLLOWUP_REMINDER_HOURS")
    )
    # How often the timer worker looks for due deadlines.
    timer_interval_seconds: float = Field(
        default=1.0, gt=0, validation_alias=_env("discharge", "TIMER_INTERVAL_SECONDS")
    )
    # CarePlan activities accepted in one discharge (each makes a follow-up, timers and bus records).
    max_followups: int = Field(default=50, ge=1, le=1000, validation_alias=_env("discharge", "MAX_FOLLOWUPS"))


class SnpSettings(ServiceSettings):
    service: ClassVar[str] = "snp"
    database_url: str | None = Field(default=None, validation_alias=_env("snp", "DATABASE_URL"))
    database_schema: str | None = Field(default=None, validation_alias=_env("snp", "DATABASE_SCHEMA"))
    # Dashboard breakdown cells under this many requests are suppressed (RELAIS_SMALL_CELL_THRESHOLD).
    small_cell_threshold: int = Field(default=5, ge=1)


class NotificationsSettings(ServiceSettings):
    service: ClassVar[str] = "notifications"
    database_url: str | None = Field(default=None, validation_alias=_env("notifications", "DATABASE_URL"))
    database_schema: str | None = Field(default=None, validation_alias=_env("notifications", "DATABASE_SCHEMA"))
    # Delivery knobs, read from RELAIS_WEBHOOK_*, RELAIS_SUBSCRIPTION_*, RELAIS_FEED_*, RELAIS_DISPATCHER_*.
    webhook_max_attempts: int = Field(default=8, ge=1, le=50)
    webhook_backoff_base_seconds: float = Field(default=2.0, gt=0)
    webhook_backoff_max_seconds: float = Field(default=3600.0, gt=0)
    webhook_timeout_seconds: float = Field(default=5.0, gt=0)
    # A process killed mid-delivery holds its claims this long; then another instance takes them over.
    webhook_lease_seconds: float = Field(default=30.0, gt=0)
    webhook_workers: int = Field(default=8, ge=1, le=64)
    dispatcher_idle_seconds: float = Field(default=0.2, gt=0)
    subscription_heartbeat_seconds: int = Field(default=60, ge=1)
    # Abuse limits (docs/security.md): a shorter heartbeat is refused; counts are live ones per organisation.
    subscription_heartbeat_min_seconds: int = Field(default=30, ge=1)
    webhooks_max_per_organisation: int = Field(default=20, ge=1)
    subscriptions_max_per_organisation: int = Field(default=20, ge=1)
    # At most this many attempts in flight per organisation, so one organisation cannot hold the whole pool.
    webhook_workers_per_organisation: int = Field(default=2, ge=1, le=64)
    feed_default_limit: int = Field(default=50, ge=1)
    feed_max_limit: int = Field(default=200, ge=1)
    # The MSSanté mail channel (docs/mssante.md): the operator's SMTP submission and IMAP mailbox of Relais'
    # own structure mailbox; unset SMTP means no mail is queued. smtps:// is implicit TLS, smtp:// uses STARTTLS
    # (plain only in development); credentials in the URL. Client certificate and CA files are PEM paths.
    mssante_smtp_url: str | None = None
    mssante_imap_url: str | None = None
    mssante_sender: str | None = None
    mssante_cert_file: str | None = None
    mssante_key_file: str | None = None
    mssante_ca_file: str | None = None
    mssante_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    mssante_imap_interval_seconds: float = Field(default=30.0, gt=0)
    # The events mailed by default; a team may choose a subset of MSSANTE_EVENT_CHOICES (docs/mssante.md).
    mssante_events: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["discharge.recorded", "handoff.proposed", "admission.recorded"]
    )

    @field_validator("mssante_events", mode="before")
    @classmethod
    def _split_events(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value


SETTINGS_BY_SERVICE: dict[str, type[ServiceSettings]] = {
    cls.service: cls for cls in (AdmissionsSettings, DischargeSettings, SnpSettings, NotificationsSettings)
}
