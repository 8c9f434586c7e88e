"""`relais directory import`: the published FINESS and Annuaire Santé layouts, encodings, separators, re-imports."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from shared.auth import Directory, organisations
from shared.directory.extracts import MAX_LINE_BYTES, NotAnExtraction
from shared.directory.importer import import_directory
from shared.directory.tables import DIRECTORY_MEMBER, DIRECTORY_ORGANISATION
from shared.identifiers import make_finess
from tests.directory_factories import Establishment, doctor, hospital, write_finess, write_rpps

MSP = Establishment(make_finess("88000777"), "MAISON DE SANTÉ DES LILAS", "603")
PHARMACY = Establishment(make_finess("88000888"), "PHARMACIE DU CENTRE", "620")
CHU = hospital("88000123", "CENTRE HOSPITALIER ÉMILE DURKHEIM")


def _activities() -> list:
    return [
        doctor(1, "R10000000001", "Cabinet des Épinettes"),
        doctor(2, "R10000000001", "Cabinet des Épinettes", profession_code="60", profession="Infirmier"),
        doctor(3, "R10000000002", "Pharmacie Sainte-Anne", profession_code="21", profession="Pharmacien"),
        doctor(4, "R10000000003", "Hôpital", finess=CHU.finess),
        doctor(5, "R10000000001", "Cabinet des Épinettes", id_type="0"),  # an ADELI practitioner: not kept
    ]


@pytest.fixture
def directory(tmp_path: Path) -> Iterator[Directory]:
    found = Directory(f"sqlite:///{tmp_path / 'auth.sqlite'}")
    yield found
    found.close()


def _organisation(directory: Directory, organisation_id: str):
    with directory.engine.connect() as connection:
        table = DIRECTORY_ORGANISATION
        return connection.execute(select(table).where(table.c.id == organisation_id)).one_or_none()


def _members(directory: Directory, organisation_id: str) -> list:
    with directory.engine.connect() as connection:
        table = DIRECTORY_MEMBER
        query = select(table).where(table.c.organisation_id == organisation_id).order_by(table.c.rpps)
        return list(connection.execute(query))


def test_published_layouts_import_establishments_practices_and_their_members(directory: Directory, tmp_path: Path):
    finess = write_finess(tmp_path / "etalab_cs1100507_stock.csv", [CHU, MSP, PHARMACY])
    rpps = write_rpps(tmp_path / "PS_LibreAcces_Personne_activite.txt", _activities())

    report = import_directory(directory.engine, finess=finess, rpps=rpps)

    chu = _organisation(directory, CHU.finess)
    assert (chu.name, chu.role, chu.commune, chu.postal_code) == (CHU.name, "hospital", "88160", "88000")
    assert chu.source == "finess+rpps"  # FINESS names it; the Annuaire Santé only adds its practitioners
    assert _organisation(directory, MSP.finess).role == "team"
    assert _organisation(directory, PHARMACY.finess) is None  # a category Relais does not route to
    practice = _organisation(directory, "R10000000001")
    assert (practice.name, practice.role, practice.id_system) == ("Cabinet des Épinettes", "team", "rpps-structure")
    assert [m.profession for m in _members(directory, "R10000000001")] == ["Médecin", "Infirmier"]
    assert _organisation(directory, "R10000000002").role is None  # a pharmacy is not a treating team
    assert (report.organisations.added, report.members.added, report.malformed_count) == (4, 4, 0)
    assert report.skipped == 2  # the pharmacy establishment and the ADELI practitioner


def test_the_same_files_twice_change_nothing_the_second_time(directory: Directory, tmp_path: Path):
    finess = write_finess(tmp_path / "finess.csv", [CHU, MSP])
    rpps = write_rpps(tmp_path / "rpps.txt", _activities())
    import_directory(directory.engine, finess=finess, rpps=rpps)

    again = import_directory(directory.engine, finess=finess, rpps=rpps)

    assert (again.organisations.added, again.organisations.changed, again.organisations.unchanged) == (0, 0, 4)
    assert (again.members.added, again.members.changed, again.members.removed) == (0, 0, 0)


def test_a_reimport_updates_names_and_the_members_a_structure_no_longer_lists(directory: Directory, tmp_path: Path):
    import_directory(
        directory.engine,
        finess=write_finess(tmp_path / "f1.csv", [CHU, MSP]),
        rpps=write_rpps(tmp_path / "r1.txt", _activities()),
    )
    renamed = Establishment(MSP.finess, "MSP DES LILAS ET DU CHÂTEAU", "603")
    fewer = [a for a in _activities() if a.profession_code != "60"]

    report = import_directory(
        directory.engine,
        finess=write_finess(tmp_path / "f2.csv", [CHU, renamed]),
        rpps=write_rpps(tmp_path / "r2.txt", fewer),
    )

    assert _organisation(directory, MSP.finess).name == "MSP DES LILAS ET DU CHÂTEAU"
    assert (report.organisations.changed, report.members.removed) == (1, 1)
    assert [m.profession for m in _members(directory, "R10000000001")] == ["Médecin"]


def test_either_encoding_and_either_separator_read_the_same(directory: Directory, tmp_path: Path):
    finess = write_finess(tmp_path / "finess.txt", [CHU], encoding="utf-8", separator="|")
    rpps = write_rpps(tmp_path / "rpps.csv", _activities()[:2], encoding="iso-8859-1", separator=";")

    report = import_directory(directory.engine, finess=finess, rpps=rpps)

    assert _organisation(directory, CHU.finess).name == "CENTRE HOSPITALIER ÉMILE DURKHEIM"
    assert _organisation(directory, "R10000000001").name == "Cabinet des Épinettes"
    assert (report.organisations.added, report.members.added, report.malformed_count) == (2, 2, 0)


def test_a_malformed_line_is_reported_with_its_number_and_the_others_are_imported(directory: Directory, tmp_path: Path):
    finess = write_finess(tmp_path / "finess.csv", [CHU, MSP], extra_lines=("structureet;123;truncated",))
    rpps = write_rpps(tmp_path / "rpps.txt", _activities()[:2], extra_lines=("8|1234|DUPONT",))

    report = import_directory(directory.engine, finess=finess, rpps=rpps)

    where = sorted((item.file, item.line) for item in report.malformed)
    assert where == [("finess.csv", 4), ("rpps.txt", 4)]
    assert "DUPONT" not in " ".join(item.reason for item in report.malformed)  # a reason never quotes the line
    assert _organisation(directory, MSP.finess) is not None and report.members.added == 2


def test_an_oversized_line_is_reported_without_being_kept(directory: Directory, tmp_path: Path):
    huge = "structureet;" + "X" * (MAX_LINE_BYTES * 3)
    report = import_directory(directory.engine, finess=write_finess(tmp_path / "f.csv", [MSP], extra_lines=(huge,)))
    assert [(item.line, item.reason.startswith("longer than")) for item in report.malformed] == [(3, True)]
    assert _organisation(directory, MSP.finess) is not None


def test_a_file_in_another_layout_is_refused_at_its_first_line(directory: Directory, tmp_path: Path):
    other = tmp_path / "other.csv"
    other.write_text("nom;prenom\nDUPONT;Jean\n", encoding="utf-8")
    with pytest.raises(NotAnExtraction, match="line 1"):
        import_directory(directory.engine, rpps=other)
    with pytest.raises(NotAnExtraction, match="line 1"):
        import_directory(directory.engine, finess=other)


def test_a_registered_organisation_takes_the_directory_name_and_no_token_is_created(
    directory: Directory, tmp_path: Path
):
    directory.add("hospital", CHU.finess, "CHU (typed by hand)")
    directory.add("team", "msp-lamarche", "MSP Lamarche")

    report = import_directory(directory.engine, finess=write_finess(tmp_path / "f.csv", [CHU, MSP]))

    assert directory.list()[0].name == CHU.name  # ids sort the FINESS number first
    assert directory.list()[1].name == "MSP Lamarche"  # what the files lack keeps its hand-typed name
    with directory.engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(organisations)).scalar_one() == 2
    assert report.registered_renamed == 1


def test_prune_deletes_what_a_full_extraction_no_longer_names(directory: Directory, tmp_path: Path):
    import_directory(directory.engine, finess=write_finess(tmp_path / "f1.csv", [CHU, MSP]))
    kept = import_directory(directory.engine, finess=write_finess(tmp_path / "f2.csv", [CHU]))
    assert (kept.absent, _organisation(directory, MSP.finess) is not None) == (1, True)
    pruned = import_directory(directory.engine, finess=write_finess(tmp_path / "f3.csv", [CHU]), prune=True)
    assert (pruned.organisations.removed, _organisation(directory, MSP.finess)) == (1, None)


def test_the_command_prints_what_changed_and_the_malformed_line_numbers(tmp_path: Path, monkeypatch):
    from typer.testing import CliRunner

    from relais.cli import app

    monkeypatch.setenv("RELAIS_DATA_DIR", str(tmp_path))
    finess = write_finess(tmp_path / "finess.csv", [CHU, MSP], extra_lines=("structureet;1",))
    rpps = write_rpps(tmp_path / "rpps.txt", _activities())
    runner = CliRunner()
    arguments = ["directory", "import", "--finess", str(finess), "--rpps", str(rpps)]

    first = runner.invoke(app, arguments)
    again = runner.invoke(app, arguments)

    assert first.exit_code == 0, first.output
    assert "finess.csv line 4" in first.output
    assert "organisations │ 4 " in first.output.replace("┃", "│")
    assert "organisations │ 0     │ 0       │ 4 " in again.output.replace("┃", "│")
    refused = runner.invoke(app, ["directory", "import"])
    assert refused.exit_code != 0


def test_an_entry_typed_by_hand_is_found_and_survives_a_pruning_import(tmp_path: Path, monkeypatch):
    from typer.testing import CliRunner

    from relais.cli import app

    monkeypatch.setenv("RELAIS_DATA_DIR", str(tmp_path))
    runner = CliRunner()
    added = runner.invoke(
        app, ["directory", "add", "--id", "msp-lamarche", "--name", "MSP de Lamarche", "--role", "team",
              "--commune", "88258"],
    )  # fmt: skip
    refused = runner.invoke(
        app, ["directory", "add", "--id", "x", "--name", "X", "--role", "team", "--commune", "99999"]
    )
    assert added.exit_code == 0, added.output
    assert refused.exit_code != 0
    directory = Directory(f"sqlite:///{tmp_path / 'auth.sqlite'}")
    import_directory(directory.engine, finess=write_finess(tmp_path / "f.csv", [CHU]), prune=True)
    entry = _organisation(directory, "msp-lamarche")
    assert (entry.name, entry.role, entry.commune, entry.postal_code) == ("MSP de Lamarche", "team", "88258", "88320")
    directory.close()


def test_members_and_structures_get_their_mssante_boxes_from_the_mssante_extraction(
    directory: Directory, tmp_path: Path
):
    from tests.directory_factories import write_mssante

    activities = _activities()
    rpps = write_rpps(tmp_path / "rpps.txt", activities)
    boxes = write_mssante(
        tmp_path / "Extraction_Correspondance_MSSante.txt",
        [
            ("PER", "prenom1.nom1@medecin.mssante.fr", activities[0].rpps, ""),
            ("PER", "someone@gmail.com", activities[1].rpps, ""),  # not an MSSanté domain: not kept
            ("ORG", "accueil@chu.mssante.fr", "", "1" + CHU.finess),
            ("APP", "robot@app.mssante.fr", "", ""),
        ],
    )
    finess = write_finess(tmp_path / "finess.csv", [CHU])

    report = import_directory(directory.engine, finess=finess, rpps=rpps, mssante=boxes)
    again = import_directory(directory.engine, finess=finess, rpps=rpps, mssante=boxes)

    members = {m.rpps: m.mssante for m in _members(directory, "R10000000001")}
    assert members == {activities[0].rpps: "prenom1.nom1@medecin.mssante.fr", activities[1].rpps: None}
    assert _organisation(directory, CHU.finess).mssante == "accueil@chu.mssante.fr"
    assert report.skipped >= 2 and (again.members.changed, again.organisations.changed) == (0, 0)
