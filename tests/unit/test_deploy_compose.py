"""docker-compose.yml and deploy/Dockerfile describe the production layout (docs/operations.md)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
RELAIS_SERVICES = {"admissions": 8001, "discharge": 8002, "snp": 8003, "notifications": 8004}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def _env(service: dict) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def _depends(service: dict) -> dict:
    depends = service.get("depends_on", {})
    return {name: {} for name in depends} if isinstance(depends, list) else depends


def test_the_six_services_exist(compose):
    assert set(compose["services"]) == {"postgres", "kafka", *RELAIS_SERVICES}


def test_kafka_runs_in_kraft_mode_without_zookeeper(compose):
    assert not any("zookeeper" in name for name in compose["services"])
    kafka = compose["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka")
    env = _env(kafka)
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_NODE_ID"] and env["KAFKA_CONTROLLER_QUORUM_VOTERS"]
    assert "CONTROLLER" in env["KAFKA_LISTENERS"] and "9092" in env["KAFKA_LISTENERS"]
    assert not any("ZOOKEEPER" in key for key in env)
    assert "kafka-topics.sh" in " ".join(kafka["healthcheck"]["test"])


def test_postgres_is_16_with_a_readiness_check_and_the_schema_script(compose):
    postgres = compose["services"]["postgres"]
    assert postgres["image"] == "postgres:16"
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    assert any("deploy/postgres-init.sql" in volume for volume in postgres["volumes"])
    script = (ROOT / "deploy" / "postgres-init.sql").read_text().lower()
    for schema in ("admissions", "discharge", "snp", "notifications", "bus", "auth"):
        assert f"create schema if not exists {schema};" in script


@pytest.mark.parametrize("name", sorted(RELAIS_SERVICES))
def test_each_relais_service_is_wired_to_kafka_postgres_and_its_health_route(compose, name):
    service = compose["services"][name]
    upper = name.upper()
    assert service["build"]["dockerfile"] == "deploy/Dockerfile"
    assert service["command"][:3] == ["relais", "serve", name]
    assert service["command"][3:] == ["--host", "0.0.0.0", "--port", "8000"]
    mllp = ["2575:2575"] if name == "admissions" else []  # admissions hosts the HL7 v2 door (docs/hl7v2.md)
    assert service["ports"] == [f"{RELAIS_SERVICES[name]}:8000", *mllp]
    env = _env(service)
    assert env["RELAIS_ENVIRONMENT"] == "production"
    assert env["RELAIS_SECRET_KEY"].startswith("${RELAIS_SECRET_KEY:?")
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
    assert env[f"RELAIS_{upper}_DATABASE_URL"].startswith("postgresql+psycopg://relais:${POSTGRES_PASSWORD")
    assert env[f"RELAIS_{upper}_DATABASE_URL"].endswith("@postgres:5432/relais")
    assert env[f"RELAIS_{upper}_DATABASE_SCHEMA"] == name
    assert env["RELAIS_AUTH_DATABASE_URL"].endswith("@postgres:5432/relais")
    assert env["RELAIS_AUTH_DATABASE_SCHEMA"] == "auth"
    assert f"/{name}/healthz" in " ".join(service["healthcheck"]["test"])
    depends = _depends(service)
    assert depends["postgres"]["condition"] == "service_healthy"
    assert depends["kafka"]["condition"] == "service_healthy"


def test_no_secret_is_written_in_the_compose_file(compose):
    reference = re.compile(r"^\$\{[A-Z_]+:\?[^}]*\}$")
    for name, service in compose["services"].items():
        for key, value in _env(service).items():
            if re.search(r"PASSWORD|SECRET|TOKEN", key):
                assert reference.match(value), f"{name}: {key} must be a required ${{...}} reference"
            for url in re.findall(r"\w+(?:\+\w+)?://\S+", value):
                userinfo = url.split("://", 1)[1].rsplit("@", 1)
                if len(userinfo) == 2 and ":" in userinfo[0]:
                    password = userinfo[0].split(":", 1)[1]
                    assert reference.match(password), f"{name}: {key} embeds a literal password"
    # nothing that looks like a literal credential anywhere in the text either
    code = "\n".join(line for line in COMPOSE.read_text().splitlines() if not line.lstrip().startswith("#"))
    assert not re.search(r"^\s*[A-Z_]*(PASSWORD|SECRET_KEY)[A-Z_]*\s*[:=]\s*[^$\s]", code, re.MULTILINE)


def test_the_image_installs_the_project_and_runs_as_a_non_root_user():
    text = DOCKERFILE.read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.MULTILINE)
    assert re.search(r"^RUN pip install \.", text, re.MULTILINE)
    users = re.findall(r"^USER\s+(\S+)", text, re.MULTILINE)
    assert users and users[-1] not in {"root", "0", "0:0"}
    assert re.search(r"^HEALTHCHECK .*healthz", text, re.MULTILINE | re.DOTALL)
    assert '["relais", "serve", "admissions"' in text
    assert (ROOT / ".dockerignore").is_file()
