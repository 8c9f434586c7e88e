"""Issue 19 item 6 (and issue 18 item 4): every outbound channel is registered through one path
(shared/channels.py): one validation of addresses and headers, one cap per organisation, one care-circle check
of what it may carry. The NdE Subscription door used to skip the Backport door's checks (reserved headers, 30
headers, invalid names, 25 created beyond the cap of 20); each is now a 422, on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from services.notifications.bootstrap import bootstrap
from shared.auth import Directory
from shared.channels import (
    NDE_CHANNEL,
    WEBHOOK_CHANNEL,
    ChannelKind,
    Reach,
    admit,
    check_channel,
    mailbox_validator,
    may_receive,
)
from shared.errors import Unprocessable
from shared.settings import NotificationsSettings
from tests import nde_factories as nde
from tests.unit.test_notifications_service import subscription

pytestmark = pytest.mark.attack

FHIR = "application/fhir+json"
NDE = "/notifications/nde/fhir/Subscription"
REFUSED_HEADERS = [
    ["Host: intranet.local"],
    ["Content-Length: 0"],
    ["Transfer-Encoding: chunked"],
    ["Relais-Signature: t=1,v1=forged"],
    ["RELAIS-Delivery-Id: 42"],
    ["Bad Name: v"],
    ["Nämé: v"],
    [": no name"],
    ["no colon"],
    ["X-Ok: a\r\nHost: evil"],
    ["X-Twice: 1", "x-twice: 2"],
    [f"X-H{i}: v" for i in range(30)],
]


@pytest.fixture(params=["sqlite", "postgres"])
def database(request) -> str | None:
    return None if request.param == "sqlite" else request.getfixturevalue("postgres_url")


@pytest.fixture
def door(database, tmp_path) -> Iterator[tuple[TestClient, Directory]]:
    schema = {"database_url": database, "database_schema": "notifications"} if database else {}
    settings = NotificationsSettings(environment="test", data_dir=tmp_path, **schema)
    directory = Directory(f"sqlite:///{tmp_path / 'auth.sqlite'}")
    service = bootstrap(settings, directory=directory, run_workers=False)
    try:
        with TestClient(service.app) as client:
            yield client, directory
    finally:
        service.runtime.close()
        directory.close()


def _headers(directory: Directory, org: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {directory.add('team', org, org)}", "Content-Type": FHIR}


def _nde(endpoint: str, channel_headers: list[str] | None = None) -> dict[str, Any]:
    body = nde.subscription(endpoint=endpoint)
    if channel_headers is not None:
        body["channel"]["header"] = channel_headers
    return body


def _refused(response) -> None:
    assert response.status_code == 422, response.text
    assert response.json()["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize("channel_headers", REFUSED_HEADERS, ids=range(len(REFUSED_HEADERS)))
def test_the_nde_door_refuses_the_headers_every_channel_refuses(door, channel_headers):
    client, directory = door
    team = _headers(directory, "msp-1")
    _refused(client.post(NDE, json=_nde("https://msp.example.org/nde", channel_headers), headers=team))
    backport = subscription()
    backport["channel"]["header"] = channel_headers
    _refused(client.post("/notifications/fhir/Subscription", json=backport, headers=team))
    assert client.get("/notifications/fhir/Subscription", headers=team).json()["total"] == 0


def test_the_nde_door_keeps_the_one_cap_of_live_subscriptions(door):
    client, directory = door
    team = _headers(directory, "msp-1")
    answers = [client.post(NDE, json=_nde(f"https://msp.example.org/nde/{i}", ["X-Api-Key: k"]), headers=team)
               for i in range(25)]
    assert [a.status_code for a in answers] == [201] * 20 + [422] * 5
    _refused(answers[-1])
    # NdE and Backport Subscriptions share the cap: the 21st live Subscription is refused whatever its door.
    _refused(client.post("/notifications/fhir/Subscription", json=subscription(), headers=team))
    assert client.get("/notifications/fhir/Subscription", headers=team).json()["total"] == 20
    # Another organisation has its own allowance.
    assert client.post(NDE, json=_nde("https://other.example.org/nde"),
                       headers=_headers(directory, "msp-2")).status_code == 201


# --- the path itself, as a new channel (an MSSanté mailbox) would call it -------------------------------------

MAILBOX = ChannelKind("mssante", family="MSSanté addresses", address_field="address")
_mailbox = mailbox_validator(["mssante.fr"])


def test_a_new_channel_is_one_declaration_and_gets_every_check():
    assert check_channel(MAILBOX, "Dr.Paul@msp.mssante.fr", None, _mailbox).address == "dr.paul@msp.mssante.fr"
    for address, extra in (("paul@gmail.com", None), ("Paul <paul@msp.mssante.fr>", None),
                           ("paul@msp.mssante.fr", ["Host: x"]), (42, None)):
        with pytest.raises(Unprocessable) as refused:
            check_channel(MAILBOX, address, extra, _mailbox)
        assert refused.value.status_code == 422
    admit(MAILBOX, 0, 1)
    with pytest.raises(Unprocessable):
        admit(MAILBOX, 1, 1)


def test_what_a_channel_may_carry_is_the_care_circle_s_decision():
    assert NDE_CHANNEL.reach is Reach.PATIENT and WEBHOOK_CHANNEL.reach is Reach.ORGANISATION
    # A per-patient channel carries only what its subscriber has as a member of the care team.
    assert may_receive(NDE_CHANNEL, "team", "full") and may_receive(NDE_CHANNEL, "dac", "full")
    assert not may_receive(NDE_CHANNEL, "cpts", "minimised")
    assert not may_receive(NDE_CHANNEL, "team", "minimised")
    assert not may_receive(NDE_CHANNEL, "team", "organisational")
    # An organisation's channel carries what was routed to the organisation, at that detail.
    assert may_receive(WEBHOOK_CHANNEL, "cpts", "minimised")
