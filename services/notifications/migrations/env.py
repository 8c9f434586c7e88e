"""Alembic environment of the notifications service."""

from services.notifications.adapters.orm import TABLES
from services.notifications.mssante.orm import MAIL_TABLES
from shared.db.alembic_env import run_migrations

run_migrations((*TABLES, *MAIL_TABLES))
