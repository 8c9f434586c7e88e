"""`relais demo --keep-running`: the territory stays up for a newcomer to sign in to the pages."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from relais.demo.territory import Territory


def _serve_until_stopped(
    url: str, territory: Territory, tokens: Mapping[str, str], console: Any, stop: threading.Event
) -> None:
    """Leave the demo territory running for a newcomer to sign in to the pages."""
    console.print(f"\nThe territory keeps running. Sign in at {url}/app/ with one of these tokens:")
    for key in ("cpts", "msp-lamarche", "msp-monthureux", "hospital"):
        org = territory.org(key)
        console.print(f"  {org.name} ({org.role}): {tokens[key]}")
    console.print("The CPTS board has one orientation waiting (Louise, discharged without a treating team).")
    console.print("Press Ctrl-C to stop.")
    try:
        while not stop.wait(1.0):
            pass
    except KeyboardInterrupt:
        console.print("stopping")
