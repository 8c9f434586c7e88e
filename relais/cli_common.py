"""What the `relais` command groups share: the console and the organisation directory of the settings."""

from __future__ import annotations

from rich.console import Console

from shared.auth import Directory
from shared.settings import RelaisSettings

console = Console()


def directory() -> Directory:
    settings = RelaisSettings()
    return Directory(settings.resolved_auth_url, settings.auth_database_schema)
