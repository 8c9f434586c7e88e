"""The people tables (members, the person of a session, sign-ins under way) on PostgreSQL, in the auth schema a
deployment gives the directory: created next to the organisations, and a person's session works there."""

from __future__ import annotations

from datetime import timedelta

import pytest

from shared.acting import Person
from shared.auth import Directory
from shared.members import Members
from shared.web.oidc import Authorization
from shared.web.oidc_logins import PendingLogins
from shared.web.people import PersonSessionStore


@pytest.mark.postgres
def test_people_tables_live_in_the_directory_schema_on_postgresql(postgres_url):
    directory = Directory(postgres_url, "auth")
    directory.add("team", "msp-a", "MSP A")
    members = Members(directory)
    members.add("msp-a", "10001234567", "Anne")
    store = PersonSessionStore(directory, members=members)
    session = store.open_for(directory.get("msp-a"), Person("10001234567", "Anne"))
    principal = store.authenticate(session)
    assert principal is not None and principal.person == Person("10001234567", "Anne")
    logins = PendingLogins(directory.engine, timedelta(minutes=10))
    logins.start(Authorization("https://provider/auth", "state-1", "nonce-1", "verifier-1"))
    taken = logins.take("state-1")
    assert taken is not None and taken.nonce == "nonce-1"
    assert logins.take("state-1") is None  # once
    directory.close()
