"""Readers of the public health directory extractions, in their published column layouts. Pure: no database.

- FINESS establishments, the etalab extraction `etalab_cs1100507_stock_*.csv`: a first line `finess;etalab;...`,
  then one `structureet` line per establishment (32 positional columns, no header), then `geolocalisation`
  lines; semicolon-separated, ISO-8859-1 as published (UTF-8 re-exports are read too).
- Annuaire Santé `PS_LibreAcces_Personne_activite_*.txt`: one header line naming the columns, then one line
  per practitioner activity (a practitioner at a structure); pipe-separated, UTF-8.

Either file may come with the other separator; each line is decoded as UTF-8, else as ISO-8859-1.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from shared.communes import commune

MAX_LINE_BYTES = 64 * 1024  # the widest published line is under 2 KB: anything far longer is not a directory line

# FINESS `structureet` columns, by position (the etalab notice of the 507 extraction).
FINESS_COLUMNS = (
    "section", "nofinesset", "nofinessej", "rs", "rslongue", "complrs", "compldistrib", "numvoie", "typvoie",
    "voie", "compvoie", "lieuditbp", "commune", "departement", "libdepartement", "ligneacheminement", "telephone",
    "telecopie", "categetab", "libcategetab", "categagretab", "libcategagretab", "siret", "codeape", "codemft",
    "libmft", "codesph", "libsph", "dateouv", "dateautor", "maj", "numuai",
)  # fmt: skip
_F = {name: index for index, name in enumerate(FINESS_COLUMNS)}
FINESS_MIN_FIELDS = _F["siret"] + 1

# FINESS establishment categories (categetab) Relais routes to; others (pharmacies, EHPAD...) are skipped.
FINESS_ROLES = {
    "101": "hospital",  # Centre Hospitalier Régional
    "106": "hospital",  # Centre hospitalier, ex Hôpital local
    "122": "hospital",  # Établissement de soins pluridisciplinaire
    "128": "hospital",  # Établissement de soins chirurgicaux
    "292": "hospital",  # Centre Hospitalier Spécialisé lutte Maladies Mentales
    "355": "hospital",  # Centre Hospitalier (C.H.)
    "365": "hospital",  # Établissement de santé privé autorisé en SSR
    "124": "team",  # Centre de Santé
    "603": "team",  # Maison de santé (L.6223-3)
    "604": "cpts",  # Communautés professionnelles territoriales de santé
}
# FINESS codes the overseas départements with a letter; the INSEE code starts 97.
_OVERSEAS = {"9A": "97", "9B": "97", "9C": "97", "9D": "97", "9E": "97", "9F": "97"}

# Annuaire Santé columns Relais reads, by their published header names.
RPPS_COLUMNS = {
    "id_type": "Type d'identifiant PP",
    "rpps": "Identifiant PP",
    "family_name": "Nom d'exercice",
    "given_name": "Prénom d'exercice",
    "profession_code": "Code profession",
    "profession": "Libellé profession",
    "siret": "Numéro SIRET site",
    "finess": "Numéro FINESS site",
    "structure": "Identifiant technique de la structure",
    "name": "Raison sociale site",
    "sign": "Enseigne commerciale site",
    "number": "Numéro Voie (coord. structure)",
    "street_type": "Libellé type de voie (coord. structure)",
    "street": "Libellé Voie (coord. structure)",
    "postal_code": "Code postal (coord. structure)",
    "commune": "Code commune (coord. structure)",
    "email": "Adresse e-mail (coord. structure)",
}
RPPS_REQUIRED = ("rpps", "family_name", "profession_code", "structure")
RPPS_TYPE = "8"  # the other type, 0, is an ADELI number: Relais keys practitioners on RPPS
# Professions of a primary-care team (Annuaire Santé codes): médecin, sage-femme, infirmier, masseur-kinésithérapeute.
PRIMARY_CARE_PROFESSIONS = frozenset({"10", "50", "60", "70"})


@dataclass(frozen=True)
class OrganisationRecord:
    id: str
    id_system: str  # finess | siret | rpps-structure
    name: str
    address: str | None
    postal_code: str | None
    commune: str | None  # INSEE code
    role: str | None
    category: str | None
    email: str | None  # the published structure address; kept as its MSSanté address only in an MSSanté domain
    source: str


@dataclass(frozen=True)
class MemberRecord:
    organisation_id: str
    rpps: str
    family_name: str
    given_name: str | None
    profession_code: str | None
    profession: str | None


@dataclass(frozen=True)
class Malformed:
    file: str
    line: int
    reason: str  # never quotes the line: a directory line names a person


class NotAnExtraction(ValueError):
    """The file's layout is not the one expected (reported with its first line number)."""


def read_lines(path: Path, on_bytes: Callable[[int], None] | None = None) -> Iterator[tuple[int, str | None]]:
    """(line number, text) for each line; text None for a line over MAX_LINE_BYTES (read without keeping it)."""
    with path.open("rb") as handle:
        number = 0
        while True:
            raw = handle.readline(MAX_LINE_BYTES + 1)
            if not raw:
                return
            number += 1
            size = len(raw)
            too_long = len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n")
            while too_long and raw and not raw.endswith(b"\n"):
                raw = handle.readline(MAX_LINE_BYTES)  # skip the rest of the oversized line in bounded reads
                size += len(raw)
            if on_bytes is not None:
                on_bytes(size)
            if too_long:
                yield number, None
                continue
            yield number, _decode(raw, first=number == 1)


def _decode(raw: bytes, *, first: bool) -> str:
    if first and raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("iso-8859-1")  # the published FINESS encoding; it decodes any byte
    return text.rstrip("\r\n")


def separator_of(line: str) -> str:
    return "|" if line.count("|") > line.count(";") else ";"


def _clean(value: str) -> str:
    return value.strip().strip('"').strip()


def _join(*parts: str) -> str | None:
    text = " ".join(part for part in (p.strip() for p in parts) if part)
    return text or None


def insee_code(department: str, code: str) -> str | None:
    """The INSEE code of a FINESS (department, commune) pair, when it names a commune of the national table."""
    department, code = department.strip().upper(), code.strip()
    if not code.isdigit():
        return None
    if department in _OVERSEAS:
        candidate = _OVERSEAS[department] + code.zfill(3)
    else:
        candidate = department.zfill(2) + code.zfill(3)
    return candidate if commune(candidate) is not None else None


def _postal_code(text: str) -> str | None:
    head = text.strip()[:5]
    return head if len(head) == 5 and head.isdigit() else None


def finess_record(fields: list[str]) -> OrganisationRecord | str:
    """An establishment, or the reason its line is malformed."""
    if len(fields) < FINESS_MIN_FIELDS:
        return f"{len(fields)} fields, a structureet line has {len(FINESS_COLUMNS)}"
    value = [_clean(field) for field in fields]
    finess = value[_F["nofinesset"]].upper()
    if len(finess) != 9 or not finess[2:].isdigit():
        return "nofinesset is not a FINESS number (9 characters)"
    name = value[_F["rslongue"]] or value[_F["rs"]]
    if not name:
        return "no name (rs)"
    category = value[_F["categetab"]] or None
    return OrganisationRecord(
        id=finess,
        id_system="finess",
        name=name[:300],
        address=_join(value[_F["numvoie"]], value[_F["typvoie"]], value[_F["voie"]], value[_F["lieuditbp"]]),
        postal_code=_postal_code(value[_F["ligneacheminement"]]),
        commune=insee_code(value[_F["departement"]], value[_F["commune"]]),
        role=FINESS_ROLES.get(category or ""),
        category=category,
        email=None,
        source="finess",
    )


def read_finess(path: Path, on_bytes: Callable[[int], None] | None = None) -> Iterator[OrganisationRecord | Malformed]:
    name = path.name
    for number, line in read_lines(path, on_bytes):
        if line is None:
            yield Malformed(name, number, f"longer than {MAX_LINE_BYTES} bytes")
            continue
        if not line.strip():
            continue
        fields = line.split(separator_of(line))
        section = _clean(fields[0]).lower()
        if section == "structureet":
            record = finess_record(fields)
            yield Malformed(name, number, record) if isinstance(record, str) else record
        elif section in ("geolocalisation", "finess", "section"):
            continue  # the extraction's first line, a header some re-exports add, or the coordinates section
        elif number == 1:
            raise NotAnExtraction(f"{name} line 1: not a FINESS etalab extraction (structureet lines)")
        else:
            yield Malformed(name, number, "not a structureet or geolocalisation line")


def rpps_header(line: str, name: str) -> tuple[str, dict[str, int], int]:
    separator = separator_of(line)
    headers = [_clean(field).lower() for field in line.split(separator)]
    while headers and not headers[-1]:
        headers.pop()  # the published header ends with a separator
    index = {key: headers.index(title.lower()) for key, title in RPPS_COLUMNS.items() if title.lower() in headers}
    missing = [RPPS_COLUMNS[key] for key in RPPS_REQUIRED if key not in index]
    if missing:
        raise NotAnExtraction(f"{name} line 1: not a PS_LibreAcces header (missing {', '.join(missing)})")
    return separator, index, len(headers)


def structure_id(row: dict[str, str]) -> tuple[str, str] | None:
    """The organisation a practitioner's activity is at: its FINESS site, else its SIRET, else the technical id."""
    finess = row.get("finess", "").upper()
    if len(finess) == 9 and finess[2:].isdigit():
        return finess, "finess"
    siret = row.get("siret", "")
    if len(siret) == 14 and siret.isdigit():
        return siret, "siret"
    structure = row.get("structure", "")
    return (structure[:100], "rpps-structure") if structure else None


def rpps_records(row: dict[str, str]) -> tuple[OrganisationRecord, MemberRecord] | str | None:
    """The structure and the member an activity line names; None for a line Relais does not keep (ADELI, no site)."""
    if row.get("id_type", RPPS_TYPE) != RPPS_TYPE:
        return None
    rpps = row["rpps"]
    if len(rpps) != 11 or not rpps.isdigit():
        return "Identifiant PP is not an RPPS number (11 digits)"
    if not row["family_name"]:
        return "no Nom d'exercice"
    where = structure_id(row)
    if where is None:
        return None
    organisation_id, system = where
    postal = row.get("postal_code") or None
    insee = row.get("commune") or None
    organisation = OrganisationRecord(
        id=organisation_id,
        id_system=system,
        name=(row.get("name") or row.get("sign") or organisation_id)[:300],
        address=_join(row.get("number", ""), row.get("street_type", ""), row.get("street", "")),
        postal_code=postal if postal and len(postal) == 5 and postal.isdigit() else None,
        commune=insee if insee and commune(insee) is not None else None,
        role=None,
        category=None,
        email=row.get("email") or None,
        source="rpps",
    )
    member = MemberRecord(
        organisation_id=organisation_id,
        rpps=rpps,
        family_name=row["family_name"][:200],
        given_name=(row.get("given_name") or None),
        profession_code=row.get("profession_code") or None,
        profession=(row.get("profession") or None),
    )
    return organisation, member


def read_rpps(
    path: Path, on_bytes: Callable[[int], None] | None = None
) -> Iterator[tuple[OrganisationRecord, MemberRecord] | Malformed | None]:
    """Each activity line's structure and member; None for a line Relais does not keep."""
    name = path.name
    lines = read_lines(path, on_bytes)
    first = next(lines, None)
    if first is None or first[1] is None:
        raise NotAnExtraction(f"{name} line 1: empty, or not a PS_LibreAcces header")
    separator, index, width = rpps_header(first[1], name)
    for number, line in lines:
        if line is None:
            yield Malformed(name, number, f"longer than {MAX_LINE_BYTES} bytes")
            continue
        if not line.strip():
            continue
        fields = line.split(separator)
        if len(fields) < width:
            yield Malformed(name, number, f"{len(fields)} fields, the header names {width}")
            continue
        found = rpps_records({key: _clean(fields[at]) for key, at in index.items()})
        yield Malformed(name, number, found) if isinstance(found, str) else found


# Annuaire Santé "Extraction_Correspondance_MSSante": one MSSanté box a line, a header line, pipe-separated.
MSSANTE_COLUMNS = {
    "kind": "Type de BAL",  # PER: a practitioner's own box; ORG: an organisation's
    "address": "Adresse BAL",
    "person": "Identification nationale PP",  # "8" + RPPS
    "structure": "Identification Structure",
}


@dataclass(frozen=True)
class Mailbox:
    kind: str  # PER | ORG
    address: str
    rpps: str | None
    structure: str | None


def read_mssante(path: Path, on_bytes: Callable[[int], None] | None = None) -> Iterator[Mailbox | Malformed | None]:
    """Each mailbox of the extraction; None for a box Relais does not keep (an application's, no owner)."""
    name = path.name
    lines = read_lines(path, on_bytes)
    first = next(lines, None)
    if first is None or first[1] is None:
        raise NotAnExtraction(f"{name} line 1: empty, or not an Extraction_Correspondance_MSSante header")
    separator = separator_of(first[1])
    headers = [_clean(field).lower() for field in first[1].split(separator)]
    index = {key: headers.index(title.lower()) for key, title in MSSANTE_COLUMNS.items() if title.lower() in headers}
    if set(index) != set(MSSANTE_COLUMNS):
        raise NotAnExtraction(f"{name} line 1: not an Extraction_Correspondance_MSSante header")
    width = max(index.values()) + 1
    for number, line in lines:
        if line is None:
            yield Malformed(name, number, f"longer than {MAX_LINE_BYTES} bytes")
            continue
        fields = line.split(separator)
        if not line.strip():
            continue
        if len(fields) < width:
            yield Malformed(name, number, f"{len(fields)} fields, the header names {len(headers)}")
            continue
        row = {key: _clean(fields[at]) for key, at in index.items()}
        person = row["person"]
        rpps = person[1:] if len(person) == 12 and person.startswith(RPPS_TYPE) and person.isdigit() else None
        kind = row["kind"].upper()
        if kind not in ("PER", "ORG") or not row["address"] or (kind == "PER" and rpps is None):
            yield None
            continue
        yield Mailbox(kind, row["address"], rpps, row["structure"] or None)
