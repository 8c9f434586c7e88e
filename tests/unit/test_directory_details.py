"""The directory's per-organisation details: HL7 v2 facilities and networks, MSSanté address; `relais org` commands."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from relais.cli import app
from shared.auth import Directory
from shared.errors import Conflict, NotFound
from shared.mssante_address import MssanteAddressError, check_mssante_address


def test_a_hospital_is_registered_with_its_hl7_facilities_and_networks(tmp_path):
    directory = Directory(f"sqlite:///{tmp_path / 'auth.db'}")
    directory.add("hospital", "750712184", "CHU", hl7_facilities=["CHU-X", "CHU-X"], hl7_networks=["127.0.0.1"])
    binding = directory.hl7_binding("750712184")
    assert binding.facilities == ("CHU-X",)
    assert binding.networks == ("127.0.0.1/32",)
    assert [b.organisation_id for b in directory.hl7_bindings()] == ["750712184"]


def test_a_facility_name_belongs_to_one_hospital_only(tmp_path):
    directory = Directory(f"sqlite:///{tmp_path / 'auth.db'}")
    directory.add("hospital", "h1", "H1", hl7_facilities=["CHU-X"])
    with pytest.raises(Conflict):
        directory.add("hospital", "h2", "H2", hl7_facilities=["CHU-X"])
    assert directory.get("h2") is None


def test_an_update_replaces_the_lists_given_and_keeps_the_others(tmp_path):
    directory = Directory(f"sqlite:///{tmp_path / 'auth.db'}")
    directory.add("hospital", "h1", "H1", hl7_facilities=["A"], hl7_networks=["10.0.0.0/8"], mssante="h1@mssante.fr")
    directory.update("h1", hl7_facilities=["B", "C"])
    assert directory.hl7_binding("h1").facilities == ("B", "C")
    assert directory.hl7_binding("h1").networks == ("10.0.0.0/8",)
    assert directory.mssante_address("h1") == "h1@mssante.fr"
    directory.set_mssante_address("h1", None)
    assert directory.mssante_address("h1") is None
    with pytest.raises(NotFound):
        directory.update("nobody", name="x")


@pytest.mark.parametrize(
    "address",
    ["x@gmail.com", "x@mssante.fr.evil.com", "Bob <x@mssante.fr>", "x@mssante.fr\r\nBcc: y@mssante.fr", "a" * 300],
)
def test_addresses_outside_the_allowed_domains_or_not_plain_are_refused(address):
    with pytest.raises(MssanteAddressError) as refused:
        check_mssante_address(address, ["mssante.fr"])
    assert address not in str(refused.value)


def test_a_subdomain_of_an_allowed_domain_is_accepted_lower_cased():
    assert check_mssante_address("Dr.Martin@MSP-Lilas.MSSante.fr", ["mssante.fr"]) == "dr.martin@msp-lilas.mssante.fr"


def test_org_add_of_an_existing_id_answers_in_one_line_and_exits_non_zero(tmp_path, monkeypatch):
    monkeypatch.setenv("RELAIS_DATA_DIR", str(tmp_path))
    runner = CliRunner()
    first = runner.invoke(app, ["org", "add", "--role", "hospital", "--id", "h1", "--name", "H", "--hl7-facility", "F"])
    assert first.exit_code == 0, first.output
    again = runner.invoke(app, ["org", "add", "--role", "hospital", "--id", "h1", "--name", "H"])
    assert again.exit_code == 1
    assert "Traceback" not in again.output and "org rotate" in again.output
    updated = runner.invoke(app, ["org", "update", "--id", "h1", "--hl7-network", "127.0.0.1/32"])
    assert updated.exit_code == 0, updated.output
    bad = runner.invoke(app, ["org", "update", "--id", "h1", "--hl7-network", "not-a-network"])
    assert bad.exit_code != 0
    refused = runner.invoke(app, ["org", "update", "--id", "h1", "--mssante", "x@gmail.com"])
    assert refused.exit_code != 0
