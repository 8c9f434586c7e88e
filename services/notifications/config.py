"""Delivery knobs of the notifications service, on top of the kernel's NotificationsSettings."""

from __future__ import annotations

from pydantic import Field

from shared.settings import NotificationsSettings


class NotificationsServiceSettings(NotificationsSettings):
    """Read from `RELAIS_WEBHOOK_*`, `RELAIS_SUBSCRIPTION_*` and `RELAIS_FEED_*` like every other setting."""

    webhook_max_attempts: int = Field(default=8, ge=1, le=50)
    webhook_backoff_base_seconds: float = Field(default=2.0, gt=0)
    webhook_backoff_max_seconds: float = Field(default=3600.0, gt=0)
    webhook_timeout_seconds: float = Field(default=5.0, gt=0)
    # A process killed mid-delivery holds its claims this long; then another instance takes them over.
    webhook_lease_seconds: float = Field(default=30.0, gt=0)
    webhook_workers: int = Field(default=8, ge=1, le=64)
    dispatcher_idle_seconds: float = Field(default=0.2, gt=0)
    subscription_heartbeat_seconds: int = Field(default=60, ge=1)
    feed_default_limit: int = Field(default=50, ge=1)
    feed_max_limit: int = Field(default=200, ge=1)


def service_settings(settings: NotificationsSettings | None) -> NotificationsServiceSettings:
    if isinstance(settings, NotificationsServiceSettings):
        return settings
    if settings is None:
        return NotificationsServiceSettings()
    # Keep every value the caller set; the delivery knobs come from the environment or their defaults.
    return NotificationsServiceSettings(**settings.model_dump())
