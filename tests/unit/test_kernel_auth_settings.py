"""Organisations, tokens and settings."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from sqlalchemy import select

from shared.auth import Directory, organisations
from shared.errors import Conflict
from shared.events import Role
from shared.settings import AdmissionsSettings, DischargeSettings, RelaisSettings


def test_a_token_authenticates_its_organisation_and_is_stored_only_hashed(tmp_path):
    directory = Directory(f"sqlite:///{tmp_path / 'auth.sqlite'}")
    token = directory.add(Role.TEAM, "msp-monthureux", "MSP de Monthureux-sur-Saône")
    principal = directory.authenticate(token)
    assert principal is not None and principal.organisation_id == "msp-monthureux" and principal.role is Role.TEAM
    assert directory.authenticate(token + "x") is None
    with directory.engine.connect() as connection:
        stored = connection.execute(select(organisations.c.token_hash)).scalar_one()
    assert token not in stored and len(stored) == 64


def test_an_organisation_cannot_be_registered_twice(tmp_path):
    directory = Directory(f"sqlite:///{tmp_path / 'auth.sqlite'}")
    directory.add(Role.CPTS, "cpts-plaine", "CPTS de la Plaine")
    with pytest.raises(Conflict):
        directory.add(Role.CPTS, "cpts-plaine", "again")


def test_rotating_a_token_revokes_the_old_one(tmp_path):
    directory = Directory(f"sqlite:///{tmp_path / 'auth.sqlite'}", cache_seconds=0)
    old = directory.add(Role.DAC, "dac-88", "DAC Vosges")
    new = directory.rotate("dac-88")
    assert directory.authenticate(old) is None
    assert directory.authenticate(new).organisation_id == "dac-88"


def test_each_service_reads_its_own_database_url(monkeypatch):
    monkeypatch.setenv("RELAIS_ADMISSIONS_DATABASE_URL", "postgresql+psycopg://db/adm")
    monkeypatch.setenv("RELAIS_DISCHARGE_DATABASE_URL", "postgresql+psycopg://db/dis")
    assert AdmissionsSettings().resolved_database_url.endswith("/adm")
    assert DischargeSettings().resolved_database_url.endswith("/dis")


def test_no_kafka_configured_means_the_embedded_log(monkeypatch):
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    assert not RelaisSettings().uses_kafka
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    monkeypatch.setenv("RELAIS_KAFKA_API_VERSION", "0.9")
    settings = RelaisSettings()
    assert settings.uses_kafka and settings.kafka_api_version_tuple == (0, 9)


def test_production_refuses_the_development_secret_and_sqlite(monkeypatch):
    monkeypatch.setenv("RELAIS_ENVIRONMENT", "production")
    with pytest.raises(ValidationError, match="RELAIS_SECRET_KEY"):
        RelaisSettings()
    monkeypatch.setenv("RELAIS_SECRET_KEY", "s" * 40)
    with pytest.raises(ValidationError, match="DATABASE_URL"):
        AdmissionsSettings()
    monkeypatch.setenv("RELAIS_ADMISSIONS_DATABASE_URL", "postgresql+psycopg://db/adm")
    assert AdmissionsSettings().environment == "production"


def test_the_cli_rotates_a_token(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from relais.cli import app

    monkeypatch.setenv("RELAIS_DATA_DIR", str(tmp_path))
    runner = CliRunner()
    added = runner.invoke(app, ["org", "add", "--role", "team", "--id", "msp-1", "--name", "MSP"])
    old = added.stdout.strip().splitlines()[-1]
    rotated = runner.invoke(app, ["org", "rotate", "--id", "msp-1"])
    new = rotated.stdout.strip().splitlines()[-1]
    directory = Directory(f"sqlite:///{tmp_path / 'auth.sqlite'}")
    assert old.startswith("rls_") and new.startswith("rls_") and old != new
    assert directory.authenticate(old) is None
    assert directory.authenticate(new).organisation_id == "msp-1"


def test_kafka_credentials_reach_the_clients_only_when_a_secured_protocol_is_set(monkeypatch):
    from shared.bus.factory import bus_from_settings

    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    assert bus_from_settings(RelaisSettings()).security == {}
    monkeypatch.setenv("RELAIS_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("RELAIS_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("RELAIS_KAFKA_SASL_USERNAME", "relais-admissions")
    monkeypatch.setenv("RELAIS_KAFKA_SASL_PASSWORD", "pw")
    security = bus_from_settings(RelaisSettings()).security
    assert security == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "relais-admissions",
        "sasl_plain_password": "pw",
    }


def test_a_refused_role_is_answered_403_and_audited_in_its_own_transaction(tmp_path):
    from types import SimpleNamespace

    from fastapi import Depends, FastAPI
    from fastapi.testclient import TestClient
    from sqlmodel import Session

    from shared.api.app import install_error_handlers
    from shared.audit import refusal_recorder
    from shared.auth import require_role
    from shared.db.engine import make_engine, session_factory
    from shared.db.tables import KERNEL_TABLES, AuditEntry
    from shared.db.uow import UnitOfWork

    directory = Directory(f"sqlite:///{tmp_path / 'auth.sqlite'}")
    hospital = directory.add(Role.HOSPITAL, "750712184", "CHU")
    team = directory.add(Role.TEAM, "msp-1", "MSP")
    engine = make_engine(f"sqlite:///{tmp_path / 'svc.sqlite'}")
    for table in KERNEL_TABLES:
        table.create(engine)
    sessions = session_factory(engine)
    app = FastAPI()
    install_error_handlers(app)
    app.state.directory = directory
    app.state.runtime = SimpleNamespace(record_refusal=refusal_recorder(lambda: UnitOfWork(sessions, "svc")))

    @app.post("/things/{thing_id}")
    def act(thing_id: str, principal=Depends(require_role(Role.TEAM))) -> dict:
        return {"by": principal.organisation_id}

    client = TestClient(app)
    assert client.post("/things/1", headers={"Authorization": f"Bearer {team}"}).json() == {"by": "msp-1"}
    refused = client.post("/things/2", headers={"Authorization": f"Bearer {hospital}"})
    assert refused.status_code == 403 and refused.json()["resourceType"] == "OperationOutcome"
    with Session(engine) as session:
        rows = session.query(AuditEntry).all()
    assert [(r.organisation_id, r.action, r.resource, r.outcome) for r in rows] == [
        ("750712184", "POST /things/{thing_id}", "/things/2", "denied")
    ]
