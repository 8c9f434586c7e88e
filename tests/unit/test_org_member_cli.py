"""`relais org member add|list`, `relais org add` of an existing id and `relais org rotate` of an unknown one: one
line each, a non-zero exit where it failed, never a traceback."""

from __future__ import annotations

from typer.testing import CliRunner

from relais.cli import app


def test_members_are_added_listed_and_refused_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("RELAIS_DATA_DIR", str(tmp_path))
    runner = CliRunner()
    assert runner.invoke(app, ["org", "add", "--role", "team", "--id", "msp-a", "--name", "MSP A"]).exit_code == 0
    added = runner.invoke(app, ["org", "member", "add", "--id", "msp-a", "--rpps", "10001234567", "--name", "Anne"])
    assert added.exit_code == 0 and "10001234567" in added.output
    again = runner.invoke(app, ["org", "member", "add", "--id", "msp-a", "--rpps", "10001234567", "--name", "Anne"])
    assert again.exit_code == 1 and "already a member" in again.output and "Traceback" not in again.output
    short = runner.invoke(app, ["org", "member", "add", "--id", "msp-a", "--rpps", "123", "--name", "X"])
    assert short.exit_code == 1 and "11 digits" in short.output
    elsewhere = runner.invoke(app, ["org", "member", "add", "--id", "nope", "--rpps", "10001234567", "--name", "A"])
    assert elsewhere.exit_code == 1 and "no organisation" in elsewhere.output
    listed = runner.invoke(app, ["org", "member", "list", "--id", "msp-a"])
    assert listed.exit_code == 0 and "Anne" in listed.output


def test_adding_an_existing_organisation_or_rotating_an_unknown_one_answers_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("RELAIS_DATA_DIR", str(tmp_path))
    runner = CliRunner()
    assert runner.invoke(app, ["org", "add", "--role", "team", "--id", "msp-a", "--name", "MSP A"]).exit_code == 0
    twice = runner.invoke(app, ["org", "add", "--role", "team", "--id", "msp-a", "--name", "MSP A"])
    assert twice.exit_code == 1 and "relais org rotate --id msp-a" in twice.output
    assert len(twice.output.strip().splitlines()) == 1
    unknown = runner.invoke(app, ["org", "rotate", "--id", "nope"])
    assert unknown.exit_code == 1 and "not registered" in unknown.output
    assert len(unknown.output.strip().splitlines()) == 1 and isinstance(unknown.exception, SystemExit)
