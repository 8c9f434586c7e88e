"""Discharge options not (yet) in the kernel's DischargeSettings, read from the environment."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict


class DischargeOptions(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RELAIS_DISCHARGE_", env_file=".env", extra="ignore")

    # After a missed follow-up the team referent has this long before the CPTS (and DAC) are told.
    followup_grace_hours: float = 48.0
    # How often the timer worker looks for due deadlines.
    timer_interval_seconds: float = 1.0
