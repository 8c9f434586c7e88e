"""The four services by name, for the CLI and the combined app."""

from __future__ import annotations

import importlib
from collections.abc import Callable

from shared.service import Service

SERVICE_NAMES = ("admissions", "discharge", "snp", "notifications")


def bootstrapper(name: str) -> Callable[..., Service]:
    if name not in SERVICE_NAMES:
        raise KeyError(name)
    return importlib.import_module(f"services.{name}.bootstrap").bootstrap
