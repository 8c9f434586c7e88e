"""Issue 19 item 13: a read of someone else's (or no one's) resource is refused with 404 and audited; with an id
of 10,000 characters the audit row used to grow to 10,013 characters on SQLite and to fail its insert on
PostgreSQL (the refusal then went unrecorded). The row is now recorded, cut to its columns, on both stores."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlmodel import col

from services.notifications.bootstrap import bootstrap
from shared.auth import Directory
from shared.db.tables import AUDIT_DETAIL_MAX, AuditEntry
from shared.service import Service
from shared.settings import NotificationsSettings

pytestmark = pytest.mark.attack

LONG_ID = "a" * 10_000


@pytest.fixture(params=["sqlite", "postgres"])
def database(request) -> str | None:
    return None if request.param == "sqlite" else request.getfixturevalue("postgres_url")


@pytest.fixture
def notifications(database, tmp_path) -> Iterator[tuple[Service, TestClient, dict[str, str]]]:
    schema = {"database_url": database, "database_schema": "notifications"} if database else {}
    directory = Directory(f"sqlite:///{tmp_path / 'auth.sqlite'}")
    service = bootstrap(NotificationsSettings(environment="test", data_dir=tmp_path, **schema),
                        directory=directory, run_workers=False)
    headers = {"Authorization": f"Bearer {directory.add('team', 'msp-1', 'MSP')}"}
    try:
        with TestClient(service.app) as client:
            yield service, client, headers
    finally:
        service.runtime.close()
        directory.close()


def _audit(service: Service, action: str) -> list[AuditEntry]:
    with service.runtime.sessions() as session:
        rows = list(session.execute(select(AuditEntry).where(col(AuditEntry.action) == action)).scalars())
        session.expunge_all()
        return rows


@pytest.mark.parametrize(
    ("path", "action"),
    [
        (f"/notifications/fhir/Subscription/{LONG_ID}", "subscription.read"),
        (f"/notifications/webhooks/{LONG_ID}", "webhook.read"),
        (f"/notifications/nde/fhir/CommunicationRequest/{LONG_ID}", "notification.read"),
    ],
)
def test_a_refused_read_with_a_huge_id_is_recorded_and_bounded(notifications, path, action):
    service, client, headers = notifications
    answer = client.get(path, headers=headers)
    assert answer.status_code == 404
    assert answer.json()["resourceType"] == "OperationOutcome"
    [row] = _audit(service, action)
    assert (row.outcome, row.organisation_id) == ("not-found", "msp-1")
    assert row.resource is not None and len(row.resource) <= 300
    assert row.resource.endswith("…") and "/aaaa" in row.resource  # cut, and says so


def test_the_refusal_recorder_bounds_every_field_and_the_detail(notifications):
    service, _client, _headers = notifications
    service.runtime.record_refusal(
        "GET /x/" + "b" * 500, organisation_id="o" * 500, role="r" * 50, resource="/x/" + "c" * 5000,
        reason="not-a-party", detail={"asked": "d" * 50_000, "k" * 500: 1, **{f"f{i}": "e" * 250 for i in range(40)}},
    )
    with service.runtime.sessions() as session:
        [row] = list(session.execute(select(AuditEntry)).scalars())
    assert len(row.action) <= 100 and len(row.organisation_id or "") <= 100 and len(row.role or "") <= 20
    assert len(row.resource or "") <= 300
    assert row.detail is not None and row.detail["reason"] == "not-a-party"
    assert len(json.dumps(row.detail)) <= AUDIT_DETAIL_MAX
