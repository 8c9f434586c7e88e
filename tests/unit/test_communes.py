"""The national communes table (shared/data/communes.csv, generated from the BAN's codes-postaux)."""

from __future__ import annotations

from shared.communes import COMMUNES_CSV, all_communes, commune, communes_for_postal_code


def test_the_table_covers_the_whole_country_and_names_its_source():
    header = COMMUNES_CSV.read_text(encoding="utf-8").splitlines()[:3]
    assert header[0].startswith("# source: npm package codes-postaux") and "ODbL" in header[1]
    table = all_communes()
    assert len(table) > 34_000
    assert {insee[:2] for insee in table} >= {"01", "2A", "2B", "75", "88", "97"}


def test_a_commune_by_its_insee_code():
    vittel = commune("88516")
    assert vittel is not None and vittel.name == "Vittel" and vittel.postal_codes == ("88800",)
    assert commune("99999") is None and commune("") is None


def test_a_shared_postal_code_names_every_commune_it_serves():
    served = communes_for_postal_code("88140")
    assert len(served) > 10 and {"88114", "88079"} <= {c.insee for c in served}
    assert [c.insee for c in served] == sorted(c.insee for c in served)
    assert communes_for_postal_code("00000") == [] and communes_for_postal_code("") == []


def test_a_commune_with_several_postal_codes():
    many = [c for c in all_communes().values() if len(c.postal_codes) > 1]
    assert many
    first = many[0]
    assert all(first in communes_for_postal_code(code) for code in first.postal_codes)
    assert first.postal_code == first.postal_codes[0]
