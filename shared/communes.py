"""French communes and their postal codes, for the whole country (shared/data/communes.csv).

The table is generated offline from the Base Adresse Nationale's `codes-postaux` package by
scripts/build_communes.py; its header names the source version and licence. A postal code can serve several
communes and a commune can have several postal codes (Paris, Lyon and Marseille by arrondissement).
"""

from __future__ import annotations

import csv
from collections import defaultdict
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

COMMUNES_CSV = Path(__file__).resolve().parent / "data" / "communes.csv"


@dataclass(frozen=True)
class Commune:
    insee: str
    name: str
    postal_codes: tuple[str, ...]

    @property
    def postal_code(self) -> str:
        """The commune's first postal code (the lowest): enough for a commune with a single one."""
        return self.postal_codes[0]


@dataclass(frozen=True)
class _Table:
    by_insee: dict[str, Commune]
    by_postal_code: dict[str, tuple[Commune, ...]]


@lru_cache(maxsize=1)
def _table() -> _Table:
    names: dict[str, str] = {}
    postal: dict[str, list[str]] = defaultdict(list)
    with COMMUNES_CSV.open(encoding="utf-8") as handle:
        lines = (line for line in handle if not line.startswith("#"))
        for row in csv.DictReader(lines):
            names[row["insee"]] = row["name"]
            postal[row["insee"]].append(row["postal_code"])
    by_insee = {insee: Commune(insee, name, tuple(sorted(postal[insee]))) for insee, name in names.items()}
    by_postal: dict[str, list[Commune]] = defaultdict(list)
    for item in by_insee.values():
        for code in item.postal_codes:
            by_postal[code].append(item)
    return _Table(by_insee, {code: tuple(sorted(found, key=lambda c: c.insee)) for code, found in by_postal.items()})


def commune(insee: str) -> Commune | None:
    """The commune of an INSEE code (COG), or None when no such commune exists."""
    return _table().by_insee.get(insee.strip())


def communes_for_postal_code(postal_code: str) -> list[Commune]:
    """Every commune a postal code serves (several for a shared code), in INSEE order; [] when unknown."""
    return list(_table().by_postal_code.get(postal_code.strip(), ()))


def all_communes() -> dict[str, Commune]:
    """Every commune by INSEE code."""
    return dict(_table().by_insee)
