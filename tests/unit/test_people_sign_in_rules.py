"""What the sign-in of people reads from Pro Santé Connect, who it matches, and when token sign-in is allowed."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from shared.members import Members, rpps_of
from shared.settings import RelaisSettings
from shared.web.oidc import SignInFailed, identity_from_userinfo
from tests.security.test_web_sessions import kernel_app

SECRET = "x" * 40


def test_the_rpps_is_read_from_the_idnps_or_a_bare_rpps_and_nothing_else():
    assert rpps_of("810001234567") == "10001234567"
    assert rpps_of("10001234567") == "10001234567"
    assert rpps_of("010001234567") is None  # an ADELI-based IDNPS names no RPPS
    assert rpps_of("8100012345") is None and rpps_of("") is None


def test_the_person_and_the_practice_structures_come_from_userinfo():
    identity = identity_from_userinfo(
        {
            "SubjectNameID": "810001234567",
            "SubjectRefPro": {
                "exercices": [
                    {
                        "nomDexercice": "MÉDECIN",
                        "prenomDexercice": "Anne",
                        "activities": [{"numeroFinessSite": "880000001"}, {"numeroSiretSite": "12345678900011"}],
                    }
                ]
            },
        }
    )
    assert identity.rpps == "10001234567" and identity.name == "Anne MÉDECIN"
    assert identity.structures == ("12345678900011", "880000001")


def test_userinfo_without_a_usable_rpps_is_refused():
    with pytest.raises(SignInFailed) as refused:
        identity_from_userinfo({"SubjectNameID": "not-an-idnps", "SubjectRefPro": "garbage"})
    assert refused.value.reason == "no-rpps"


def test_members_answer_the_active_organisations_an_rpps_acts_for(tmp_path):
    from shared.auth import Directory

    directory = Directory(f"sqlite:///{tmp_path / 'auth.sqlite'}")
    directory.add("team", "msp-b", "MSP B")
    directory.add("team", "msp-a", "MSP A")
    members = Members(directory)
    members.add("msp-b", "10001234567", "Anne")
    members.add("msp-a", "10001234567", "Anne")
    assert [p.organisation_id for p in members.organisations_for("10001234567")] == ["msp-a", "msp-b"]
    assert members.organisations_for("10009999999") == []
    with pytest.raises(ValueError):
        members.add("msp-a", "123", "Trop court")
    directory.close()


def test_token_sign_in_is_off_by_default_in_production_and_on_in_development():
    assert RelaisSettings(environment="development").resolved_token_signin
    assert not RelaisSettings(environment="production", secret_key=SECRET).resolved_token_signin
    assert RelaisSettings(environment="production", secret_key=SECRET, token_signin=True).resolved_token_signin


@pytest.mark.attack
def test_with_token_sign_in_off_a_valid_token_opens_no_session(tmp_path):
    from shared.auth import Directory

    directory = Directory(f"sqlite:///{tmp_path / 'auth.sqlite'}")
    token = directory.add("team", "msp-a", "MSP A")
    settings = RelaisSettings(data_dir=tmp_path, token_signin=False)
    with TestClient(kernel_app(directory, settings), base_url="http://127.0.0.1") as client:
        page = client.get("/discharge/app/signin")
        assert 'name="token"' not in page.text
        refused = client.post("/discharge/app/signin", data={"token": token, "csrf": "x"}, follow_redirects=False)
        assert refused.status_code == 403 and "relais_session" not in refused.cookies
    directory.close()


@pytest.mark.attack
def test_a_person_removed_from_the_organisation_loses_the_session_at_once(tmp_path):
    from shared.acting import Person
    from shared.auth import Directory
    from shared.web.people import PersonSessionStore

    directory = Directory(f"sqlite:///{tmp_path / 'auth.sqlite'}")
    directory.add("team", "msp-a", "MSP A")
    members = Members(directory)
    members.add("msp-a", "10001234567", "Anne")
    store = PersonSessionStore(directory, members=members)
    session = store.open_for(directory.get("msp-a"), Person("10001234567", "Anne"))
    principal = store.authenticate(session)
    assert principal is not None and principal.person == Person("10001234567", "Anne")
    assert members.remove("msp-a", "10001234567")
    assert store.authenticate(session) is None
    directory.close()


def test_a_practitioner_the_imported_directory_lists_at_a_registered_team_acts_for_it(tmp_path):
    from datetime import UTC, datetime

    from sqlalchemy import insert

    from shared.auth import Directory
    from shared.directory.tables import DIRECTORY_MEMBER

    directory = Directory(f"sqlite:///{tmp_path / 'auth.sqlite'}")
    directory.add("team", "msp-a", "MSP A")
    members = Members(directory)
    imported = {"rpps": "10001234567", "family_name": "Martin", "digest": "d", "updated_at": datetime.now(UTC)}
    with directory.engine.begin() as connection:
        connection.execute(insert(DIRECTORY_MEMBER).values(organisation_id="msp-a", **imported))
        # Listed at an organisation that is not registered with Relais: no sign-in for it.
        connection.execute(insert(DIRECTORY_MEMBER).values(organisation_id="ch-ailleurs", **imported))
    assert [p.organisation_id for p in members.organisations_for("10001234567")] == ["msp-a"]
    members.add("msp-a", "10001234567", "Anne Martin")  # listed both ways: still one choice
    assert [p.organisation_id for p in members.organisations_for("10001234567")] == ["msp-a"]
    directory.close()
