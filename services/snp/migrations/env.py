"""Alembic environment of the snp service."""

from services.snp.adapters.orm import TABLES
from shared.db.alembic_env import run_migrations

run_migrations(TABLES)
