"""Alembic environment of the admissions service."""

from services.admissions.adapters.orm import TABLES
from services.admissions.adapters.panels import PANEL_TABLES
from shared.db.alembic_env import run_migrations

run_migrations((*TABLES, *PANEL_TABLES))
