"""The commune reference list (INSEE codes by postal code).

Minimal stand-in until the whole-country list lands: it reads the demo territory's bundled CSV.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

_CSV = Path(__file__).resolve().parent.parent / "services" / "snp" / "data" / "communes.csv"


@dataclass(frozen=True)
class Commune:
    insee: str
    name: str
    postal_code: str


@lru_cache(maxsize=1)
def _by_postal_code() -> dict[str, list[Commune]]:
    table: dict[str, list[Commune]] = {}
    with _CSV.open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            commune = Commune(row["insee"], row["name"], row["postal_code"])
            table.setdefault(commune.postal_code, []).append(commune)
    return {pc: sorted(found, key=lambda c: c.insee) for pc, found in table.items()}


def communes_for_postal_code(postal_code: str) -> list[Commune]:
    """The communes a postal code serves (empty for an unknown one)."""
    return list(_by_postal_code().get(postal_code.strip(), []))
