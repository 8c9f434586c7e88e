"""The demo territory (relais/demo_data/territory.json) and its organisations registered in the directory."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from relais.demo.errors import DemoError
from shared.identifiers import make_finess, make_nir, make_rpps

DATA = Path(__file__).resolve().parent.parent / "demo_data" / "territory.json"


@dataclass(frozen=True)
class Commune:
    insee: str
    name: str
    postal_code: str


@dataclass(frozen=True)
class Organisation:
    key: str
    id: str
    role: str
    name: str
    commune: Commune | None = None


@dataclass(frozen=True)
class Referent:
    rpps: str
    family: str
    given: str
    phone: str


@dataclass(frozen=True)
class Person:
    key: str
    given: str
    family: str
    sex: int
    birth_date: date
    commune: Commune
    team: str | None
    conditions: tuple[tuple[str, str], ...]
    nir: str


@dataclass
class Territory:
    organisations: dict[str, Organisation]
    referents: dict[str, Referent]
    people: dict[str, Person]
    communes: dict[str, Commune]
    slots: list[dict[str, Any]]
    snp_requests: list[dict[str, Any]]
    territory: str
    territory_communes: list[str] = field(default_factory=list)

    def org(self, key: str) -> Organisation:
        return self.organisations[key]

    @property
    def postal_codes(self) -> list[str]:
        # Every postal code of the demo territory's communes is covered by the CPTS de la Plaine and the DAC.
        return sorted({self.communes[insee].postal_code for insee in self.territory_communes})


def load_territory(run_tag: str | None = None) -> Territory:
    """The territory of demo_data/territory.json; people get fresh INS-NIR values for each run tag."""
    from shared.communes import all_communes

    data = json.loads(DATA.read_text(encoding="utf-8"))
    communes = {c.insee: Commune(c.insee, c.name, c.postal_code) for c in all_communes().values()}
    rng = random.Random(run_tag or "relais-demo")  # noqa: S311 - reproducible demo data, not a secret
    organisations = {}
    for item in data["organisations"]:
        org_id = make_finess(item["finess_body"]) if "finess_body" in item else item["id"]
        commune = communes[item["commune"]] if item.get("commune") else None
        organisations[item["key"]] = Organisation(item["key"], org_id, item["role"], item["name"], commune)
    referents = {
        key: Referent(make_rpps(r["rpps_body"]), r["family"], r["given"], r["phone"])
        for key, r in data["referents"].items()
    }
    people = {}
    for item in data["people"]:
        born = date.fromisoformat(item["birth_date"])
        # Birth commune and order number are drawn per run: a re-run never meets an earlier enrolment.
        nir = make_nir(item["sex"], born.year % 100, born.month, "88", rng.randint(1, 999), rng.randint(1, 999))
        people[item["key"]] = Person(
            item["key"],
            item["given"],
            item["family"],
            item["sex"],
            born,
            communes[item["commune"]],
            item["team"],
            tuple((code, display) for code, display in item["conditions"]),
            nir,
        )
    return Territory(
        organisations,
        referents,
        people,
        communes,
        data["slots"],
        data["snp_requests"],
        data["territory"],
        list(data["communes"]),
    )


def register(territory: Territory, directory: Any) -> dict[str, str]:
    """Bearer tokens of every demo organisation: registered, or given a fresh token if already there."""
    from shared.errors import Conflict

    tokens = {}
    for org in territory.organisations.values():
        try:
            tokens[org.key] = directory.add(org.role, org.id, org.name)
        except Conflict:
            existing = directory.get(org.id)
            if existing is None or existing.role.value != org.role:
                role = existing.role.value if existing else "?"
                raise DemoError(f"organisation {org.id} is registered as a {role}, not a {org.role}") from None
            tokens[org.key] = directory.rotate(org.id)
    return tokens
