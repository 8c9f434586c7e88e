"""`relais directory import` of a 100,000-line Annuaire Santé file (and a FINESS file), into SQLite.

Run: .venv/bin/python benchmarks/directory_import.py [LINES]   (prints lines/second; not a test)
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shared.auth import Directory
from shared.directory.importer import import_directory
from shared.identifiers import make_finess
from tests.directory_factories import Establishment, doctor, write_finess, write_rpps

PROFESSIONS = (("10", "Médecin"), ("60", "Infirmier"), ("70", "Masseur-Kinésithérapeute"), ("21", "Pharmacien"))


def files(folder: Path, lines: int) -> tuple[Path, Path]:
    """`lines` activities over lines/4 structures, and a FINESS file of lines/10 establishments."""
    activities = []
    for index in range(lines):
        code, label = PROFESSIONS[index % len(PROFESSIONS)]
        structure = f"R1{index // 4:010d}"
        activities.append(doctor(index, structure, f"Cabinet {index // 4}", profession_code=code, profession=label))
    establishments = [
        Establishment(make_finess(f"88{index:06d}"), f"MAISON DE SANTÉ {index}", "603") for index in range(lines // 10)
    ]
    return write_finess(folder / "finess.csv", establishments), write_rpps(folder / "rpps.txt", activities)


def measure(lines: int = 100_000) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="relais-bench-directory-") as folder:
        finess, rpps = files(Path(folder), lines)
        directory = Directory(f"sqlite:///{Path(folder) / 'auth.sqlite'}")
        started = time.perf_counter()
        first = import_directory(directory.engine, finess=finess, rpps=rpps)
        first_seconds = time.perf_counter() - started
        started = time.perf_counter()
        again = import_directory(directory.engine, finess=finess, rpps=rpps)
        again_seconds = time.perf_counter() - started
        directory.close()
    return {
        "lines": float(first.lines),
        "first_seconds": first_seconds,
        "again_seconds": again_seconds,
        "organisations": float(first.organisations.added),
        "members": float(first.members.added),
        "unchanged_again": float(again.organisations.unchanged + again.members.unchanged),
    }


def main() -> None:
    lines = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    r = measure(lines)
    print(
        f"directory import: {r['lines']:.0f} lines ({r['organisations']:.0f} organisations, {r['members']:.0f} "
        f"members) in {r['first_seconds']:.1f} s; the same files again in {r['again_seconds']:.1f} s (no change)"
    )


if __name__ == "__main__":
    main()
