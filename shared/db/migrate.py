"""Alembic, one history per service (`services/<name>/migrations`), driven from code: `relais db upgrade`."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine

SERVICES_DIR = Path(__file__).resolve().parents[2] / "services"


def alembic_config(service: str, engine: Engine, schema: str | None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(SERVICES_DIR / service / "migrations"))
    config.attributes["engine"] = engine
    config.attributes["schema"] = schema
    return config


def upgrade(service: str, engine: Engine, schema: str | None = None, revision: str = "head") -> None:
    command.upgrade(alembic_config(service, engine, schema), revision)


def revision(service: str, engine: Engine, message: str, schema: str | None = None) -> None:
    """Autogenerate a new revision for `service` against its current database (developer tool)."""
    command.revision(alembic_config(service, engine, schema), message=message, autogenerate=True)
