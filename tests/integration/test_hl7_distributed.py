"""The distributed mode: admissions hosts the MLLP door with its own database; an A03 is committed to admissions'
outbox before its AA and reaches the discharge service (its own database) over the bus, which records the same
discharge the FHIR door would. What discharge refuses after the AA is audited there."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from services.admissions.bootstrap import bootstrap as admissions_bootstrap
from services.admissions.entrypoints.hl7 import attach_distributed_mllp
from services.discharge.adapters.orm import DischargeRow
from services.discharge.bootstrap import bootstrap as discharge_bootstrap
from shared.auth import Directory
from shared.bus.embedded import EmbeddedBus
from shared.db.tables import AuditEntry
from shared.events import Role
from shared.hl7v2.settings import MllpSettings
from shared.settings import AdmissionsSettings, DischargeSettings
from tests.hl7_support import FACILITIES, HOSPITAL, SECRET, MllpClient, msa, pam_message
from tests.infra.brokers import free_port
from tests.infra.wait import wait_for


@dataclass
class Distributed:
    port: int
    admissions: Any
    discharge: Any


def _real_parts(request: pytest.FixtureRequest) -> dict[str, dict[str, Any]]:
    """PostgreSQL (a schema per service) and Apache Kafka 4, started by the harness."""
    url = request.getfixturevalue("postgres_url")
    kafka = request.getfixturevalue("kafka4")
    common = {"database_url": url, "kafka_bootstrap_servers": kafka.bootstrap, "kafka_session_timeout_ms": 2000}
    return {
        "admissions": {**common, "database_schema": "admissions"},
        "discharge": {**common, "database_schema": "discharge"},
    }


@pytest.fixture(params=["sqlite+embedded-log", pytest.param("postgres+kafka4", marks=[pytest.mark.postgres,
                                                                                       pytest.mark.kafka])])
def distributed(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Distributed]:
    directory = Directory(f"sqlite:///{tmp_path / 'auth.sqlite'}")
    directory.add(Role.HOSPITAL, HOSPITAL, "CHU", hl7_facilities=list(FACILITIES), hl7_networks=["127.0.0.1/32"])
    real = request.param == "postgres+kafka4"
    options = _real_parts(request) if real else {"admissions": {}, "discharge": {}}
    # Without Kafka, one embedded log stands for it: the only link between the two services either way.
    bus = None if real else EmbeddedBus(f"sqlite:///{tmp_path / 'bus.sqlite'}")
    admissions = admissions_bootstrap(
        AdmissionsSettings(environment="test", data_dir=tmp_path / "a", secret_key=SECRET, **options["admissions"]),
        bus=bus, directory=directory,
    )
    discharge = discharge_bootstrap(
        DischargeSettings(environment="test", data_dir=tmp_path / "d", secret_key=SECRET, **options["discharge"]),
        bus=bus, directory=directory,
    )
    port = free_port()
    assert attach_distributed_mllp(admissions, MllpSettings(port=port))
    admissions.runtime.start()
    discharge.runtime.start()
    # The listener starts on a supervised worker thread of admissions.
    wait_for(lambda: _connects(port), 20, 0.05, "the MLLP listener")
    yield Distributed(port, admissions, discharge)
    for service in (admissions, discharge):
        service.runtime.close()
    directory.close()


def _connects(port: int) -> bool:
    try:
        MllpClient(port, timeout=1).close()
    except OSError:
        return False
    return True


def _refusals(service: Any) -> list[str]:
    with service.runtime.sessions() as session:
        return [str((row.detail or {}).get("reason")) for row in session.execute(select(AuditEntry)).scalars()]


def _stay() -> str:
    # A stay of its own: the Kafka topic outlives a test, and a new group reads it from the start.
    return f"NDA-{uuid.uuid4().hex[:12]}"


def _discharged(service: Any, nda: str) -> int:
    with service.runtime.sessions() as session:
        rows = session.execute(select(DischargeRow.encounter_key)).scalars().all()
    return sum(1 for key in rows if key.endswith(f"|{nda}"))


def test_an_a03_is_acknowledged_once_committed_and_recorded_by_the_discharge_service(distributed):
    nda = _stay()
    client = MllpClient(distributed.port)
    assert msa(client.exchange(pam_message("A01", f"{nda}-ADM", nda=nda).encode()))[1] == "AA"
    discharge = pam_message("A03", f"{nda}-SOR", nda=nda, discharged="20240509110000")
    assert msa(client.exchange(discharge.encode()))[1] == "AA"
    client.close()
    wait_for(lambda: _discharged(distributed.discharge, nda) == 1, 30, 0.1, "the forwarded discharge")


def test_a_refusal_by_the_discharge_service_after_the_aa_is_audited_there(distributed):
    nda = _stay()
    client = MllpClient(distributed.port)
    cancel = pam_message("A13", f"{nda}-CXL", nda=nda, zbe_action="CANCEL", original_trigger="A03",
                         discharged="20240509110000")
    assert msa(client.exchange(cancel.encode()))[1] == "AA"  # committed for the discharge service: AA
    client.close()
    wait_for(lambda: any("hl7v2 forwarded" in reason for reason in _refusals(distributed.discharge)), 30, 0.1,
             "the discharge service's audit of the refused cancellation")
    assert _discharged(distributed.discharge, nda) == 0
