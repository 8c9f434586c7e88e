"""The example messages of docs/examples/, dated relative to today (`relais example FILE`).

The examples describe one stay ending on EXAMPLE_DISCHARGE_DAY; every instant in them is moved by the same whole
number of days so that the stay ends yesterday, keeping times of day, time zones and the order of events. Dates
without a time (a birth date) are not instants of the stay and stay as they are.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from typing import Any

EXAMPLE_DISCHARGE_DAY = date(2024, 5, 9)
INSTANT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$")


def shift_for(today: date) -> timedelta:
    return (today - timedelta(days=1)) - EXAMPLE_DISCHARGE_DAY


def _moved(value: str, shift: timedelta) -> str:
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    text = (moment + shift).isoformat()
    return text.replace("+00:00", "Z") if value.endswith("Z") else text


def dated(document: Any, today: date) -> Any:
    """A copy of the JSON document with every instant moved so that the example stay ended yesterday."""
    shift = shift_for(today)

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            return {key: walk(value) for key, value in node.items()}
        if isinstance(node, list):
            return [walk(value) for value in node]
        if isinstance(node, str) and INSTANT.match(node):
            return _moved(node, shift)
        return node

    return walk(document)
