"""Synthetic directory extractions in the published layouts (FINESS etalab 507, Annuaire Santé PS_LibreAcces),
written by the tests themselves: fictitious establishments and practitioners with valid check digits."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from shared.directory.extracts import FINESS_COLUMNS
from shared.identifiers import make_finess, make_rpps

# The PS_LibreAcces_Personne_activite header, column for column, as published (it ends with the separator).
RPPS_HEADER = (
    "Type d'identifiant PP", "Identifiant PP", "Identification nationale PP", "Code civilité d'exercice",
    "Libellé civilité d'exercice", "Code civilité", "Libellé civilité", "Nom d'exercice", "Prénom d'exercice",
    "Code profession", "Libellé profession", "Code catégorie professionnelle", "Libellé catégorie professionnelle",
    "Code type savoir-faire", "Libellé type savoir-faire", "Code savoir-faire", "Libellé savoir-faire",
    "Code mode exercice", "Libellé mode exercice", "Numéro SIRET site", "Numéro SIREN site", "Numéro FINESS site",
    "Numéro FINESS établissement juridique", "Identifiant technique de la structure", "Raison sociale site",
    "Enseigne commerciale site", "Complément destinataire (coord. structure)",
    "Complément point géographique (coord. structure)", "Numéro Voie (coord. structure)",
    "Indice répétition voie (coord. structure)", "Code type de voie (coord. structure)",
    "Libellé type de voie (coord. structure)", "Libellé Voie (coord. structure)",
    "Mention distribution (coord. structure)", "Bureau cedex (coord. structure)", "Code postal (coord. structure)",
    "Code commune (coord. structure)", "Libellé commune (coord. structure)", "Code pays (coord. structure)",
    "Libellé pays (coord. structure)", "Téléphone (coord. structure)", "Téléphone 2 (coord. structure)",
    "Télécopie (coord. structure)", "Adresse e-mail (coord. structure)", "Code Département (structure)",
    "Libellé Département (structure)", "Ancien identifiant de la structure", "Autorité d'enregistrement",
    "Code secteur d'activité", "Libellé secteur d'activité", "Code section tableau pharmaciens",
    "Libellé section tableau pharmaciens",
)  # fmt: skip


@dataclass(frozen=True)
class Establishment:
    finess: str
    name: str
    category: str  # categetab
    department: str = "88"
    commune: str = "160"  # Épinal is 88160
    postal_line: str = "88000 EPINAL"
    street: str = "DE LA REPUBLIQUE"


@dataclass(frozen=True)
class Activity:
    rpps: str
    family_name: str
    given_name: str
    profession_code: str
    profession: str
    structure: str  # Identifiant technique de la structure
    site_name: str
    siret: str = ""
    finess: str = ""
    postal_code: str = "88000"
    commune: str = "88160"
    email: str = ""
    id_type: str = "8"


def finess_line(item: Establishment, separator: str = ";") -> str:
    values = dict.fromkeys(FINESS_COLUMNS, "")
    values.update(
        section="structureet", nofinesset=item.finess, nofinessej=make_finess("88" + item.finess[2:8][::-1][:6]),
        rs=item.name[:38], rslongue=item.name, numvoie="12", typvoie="R", voie=item.street,
        commune=item.commune, departement=item.department, libdepartement="VOSGES",
        ligneacheminement=item.postal_line, categetab=item.category, libcategetab="", siret="",
    )  # fmt: skip
    return separator.join(values[name] for name in FINESS_COLUMNS)


def write_finess(
    path: Path,
    items: list[Establishment],
    *,
    encoding: str = "iso-8859-1",
    separator: str = ";",
    extra_lines: tuple[str, ...] = (),
) -> Path:
    lines = [separator.join(("finess", "etalab", "95", "2026-11-30"))]
    lines += [finess_line(item, separator) for item in items]
    lines += list(extra_lines)
    lines += [
        separator.join(
            (
                "geolocalisation",
                item.finess,
                "955000.0",
                "6785000.0",
                "1",
                "ATLASANTE",
                "100",
                "IGN",
                "BD_ADRESSE",
                "V2.1",
                "LAMBERT_93",
                "2026-11-30",
            )
        )
        for item in items
    ]
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode(encoding))
    return path


def activity_line(item: Activity, separator: str = "|") -> str:
    values = dict.fromkeys(RPPS_HEADER, "")
    values.update({
        "Type d'identifiant PP": item.id_type, "Identifiant PP": item.rpps,
        "Identification nationale PP": item.id_type + item.rpps, "Nom d'exercice": item.family_name,
        "Prénom d'exercice": item.given_name, "Code profession": item.profession_code,
        "Libellé profession": item.profession, "Numéro SIRET site": item.siret, "Numéro FINESS site": item.finess,
        "Identifiant technique de la structure": item.structure, "Raison sociale site": item.site_name,
        "Numéro Voie (coord. structure)": "3", "Libellé type de voie (coord. structure)": "Rue",
        "Libellé Voie (coord. structure)": "des Lilas", "Code postal (coord. structure)": item.postal_code,
        "Code commune (coord. structure)": item.commune, "Adresse e-mail (coord. structure)": item.email,
    })  # fmt: skip
    return separator.join(values[name] for name in RPPS_HEADER) + separator


def write_rpps(
    path: Path,
    items: list[Activity],
    *,
    encoding: str = "utf-8",
    separator: str = "|",
    extra_lines: tuple[str, ...] = (),
) -> Path:
    lines = [separator.join(RPPS_HEADER) + separator] + [activity_line(item, separator) for item in items]
    lines += list(extra_lines)
    path.write_bytes(("\n".join(lines) + "\n").encode(encoding))
    return path


def doctor(
    index: int,
    structure: str,
    site_name: str,
    *,
    profession_code: str = "10",
    profession: str = "Médecin",
    **extra: str,
) -> Activity:
    return Activity(
        rpps=make_rpps(f"10{index:08d}"),
        family_name=f"NOM{index}",
        given_name=f"Prénom{index}",
        profession_code=profession_code,
        profession=profession,
        structure=structure,
        site_name=site_name,
        **extra,
    )


def hospital(body: str, name: str = "CENTRE HOSPITALIER EMILE DURKHEIM") -> Establishment:
    return Establishment(make_finess(body), name, "355")


# The Extraction_Correspondance_MSSante header, column for column, as published.
MSSANTE_HEADER = (
    "Type de BAL", "Adresse BAL", "Type Identifiant PP", "Identifiant PP", "Identification nationale PP",
    "Type identifiant structure", "Identification Structure", "Service de rattachement", "Civilité d'exercice",
    "Nom d'exercice", "Prénom d'exercice", "Catégorie profession", "Libellé de catégorie profession",
    "Code Profession", "Libellé Profession", "Code savoir-faire", "Libellé savoir-faire", "Dématérialisation",
    "Raison Sociale structure BAL", "Enseigne commerciale structure BAL", "L2COMPLEMENTLOCALISATION",
    "L3COMPLEMENTDISTRIBUTION", "L4NUMEROVOIE", "L4COMPLEMENTNUMEROVOIE", "NL4TYPEVOIE", "L4LIBELLEVOIE",
    "L5LIEUDITMENTION", "L6LIGNEACHEMINEMENT", "Code postal", "Département", "Pays",
)  # fmt: skip


def write_mssante(path: Path, boxes: list[tuple[str, str, str, str]]) -> Path:
    """(kind PER|ORG, address, RPPS or "", structure id or "") per box."""
    lines = ["|".join(MSSANTE_HEADER)]
    for kind, address, rpps, structure in boxes:
        values = dict.fromkeys(MSSANTE_HEADER, "")
        values.update({"Type de BAL": kind, "Adresse BAL": address, "Identifiant PP": rpps,
                       "Identification nationale PP": "8" + rpps if rpps else "",
                       "Identification Structure": structure})  # fmt: skip
        lines.append("|".join(values[name] for name in MSSANTE_HEADER))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
