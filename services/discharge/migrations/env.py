"""Alembic environment of the discharge service."""

from services.discharge.adapters.orm import TABLES
from shared.db.alembic_env import run_migrations

run_migrations(TABLES)
