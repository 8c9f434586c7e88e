#!/usr/bin/env python3
"""Regenerate shared/data/communes.csv from the `codes-postaux` package (Base Adresse Nationale), offline.

Usage: `npm pack codes-postaux` (in a scratch folder), then
       python scripts/build_communes.py path/to/codes-postaux-X.Y.Z.tgz [shared/data/communes.csv]
The tarball is read in place: nothing is installed and nothing is fetched by this script.
"""

from __future__ import annotations

import csv
import io
import json
import sys
import tarfile
from pathlib import Path

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "shared" / "data" / "communes.csv"
DATA_MEMBER = "package/codes-postaux.json"


def read_package(tarball: Path) -> tuple[str, list[dict]]:
    with tarfile.open(tarball, "r:gz") as archive:
        manifest = json.load(archive.extractfile("package/package.json"))  # type: ignore[arg-type]
        rows = json.load(archive.extractfile(DATA_MEMBER))  # type: ignore[arg-type]
    return manifest["version"], rows


def compact(rows: list[dict]) -> list[tuple[str, str, str]]:
    """One line per (INSEE code, postal code); the name is the commune's official name."""
    pairs = {(r["codeCommune"], r["codePostal"]): r["nomCommune"] for r in rows}
    return sorted((insee, name, postal) for (insee, postal), name in pairs.items())


def write(out: Path, version: str, table: list[tuple[str, str, str]]) -> None:
    buffer = io.StringIO()
    buffer.write(
        f"# source: npm package codes-postaux {version} (Base Adresse Nationale), file {DATA_MEMBER}\n"
        "# licence: data ODbL (La Poste, base officielle des codes postaux; INSEE COG); package code MIT\n"
        "# regenerate: python scripts/build_communes.py codes-postaux-<version>.tgz\n"
    )
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["insee", "name", "postal_code"])
    writer.writerows(table)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(buffer.getvalue(), encoding="utf-8")


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        return 2
    version, rows = read_package(Path(argv[1]))
    table = compact(rows)
    out = Path(argv[2]) if len(argv) == 3 else DEFAULT_OUT
    write(out, version, table)
    print(f"{len(table)} (commune, postal code) pairs, {len({t[0] for t in table})} communes -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
