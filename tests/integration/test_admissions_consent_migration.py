"""The admissions migration e4b7a9c2d301 upgrades a database written before it: a standing opposition belongs to
whoever recorded it and the team that treated the patient then; a hospital's DAC case covers its latest stay
before the referral, a team's the patient. On SQLite and on PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from shared.db import migrate
from shared.db.engine import make_engine

BEFORE = "d3c1e2a7b001"
T0 = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request, tmp_path):
    if request.param == "sqlite":
        url, schema = f"sqlite:///{tmp_path / 'admissions.sqlite'}", None
    else:
        url, schema = request.getfixturevalue("postgres_url"), "admissions"
    engine = make_engine(url, schema)
    migrate.upgrade("admissions", engine, schema, revision=BEFORE)
    yield engine, schema
    engine.dispose()


def _careteam(conn, team_id: str, org: str, status: str, start: datetime, end: datetime | None) -> None:
    conn.execute(
        text(
            "INSERT INTO admissions_careteam (id, patient_key, subject_system, subject_value, team_org_id, status,"
            " started_at, ended_at, version) VALUES (:id, 'p1', 's', 'v', :org, :status, :start, :end, 1)"
        ),
        {"id": team_id, "org": org, "status": status, "start": start, "end": end},
    )


def _admission(conn, admission_id: str, hospital: str, encounter: str, at: datetime) -> None:
    conn.execute(
        text(
            "INSERT INTO admissions_admission (id, message_id, fingerprint, hospital_org_id, encounter_key,"
            " patient_key, status, encounter_class, started_at, response, recipients, recorded_at, updated_at)"
            " VALUES (:id, :id, 'f', :hospital, :encounter, 'p1', 'recorded', 'IMP', 's', '{}', '[]', :at, :at)"
        ),
        {"id": admission_id, "hospital": hospital, "encounter": encounter, "at": at},
    )


def _dac_case(conn, case_id: str, referred_by: str, opened: datetime) -> None:
    conn.execute(
        text(
            "INSERT INTO admissions_dac_case (id, patient_key, dac_org_id, referred_by, opened_at)"
            " VALUES (:id, 'p1', :dac, :by, :opened)"
        ),
        {"id": case_id, "dac": f"dac-{case_id}", "by": referred_by, "opened": opened},
    )


def test_existing_oppositions_and_dac_cases_are_filled_in(engine):
    engine, schema = engine
    with engine.begin() as conn:
        _careteam(conn, "ct-old", "msp-old", "inactive", T0, T0 + timedelta(days=1))
        _careteam(conn, "ct-now", "msp-now", "active", T0 + timedelta(days=1), None)
        conn.execute(
            text(
                "INSERT INTO admissions_consent (patient_key, opposed, recorded_by, recorded_at)"
                " VALUES ('p1', :opposed, 'hospital-1', :at)"
            ),
            {"opposed": True, "at": T0 + timedelta(hours=12)},  # while msp-old treated the patient
        )
        _admission(conn, "a1", "hospital-1", "enc|1", T0)
        _admission(conn, "a2", "hospital-1", "enc|2", T0 + timedelta(days=2))
        _admission(conn, "a3", "hospital-1", "enc|3", T0 + timedelta(days=5))  # after the referral
        _dac_case(conn, "by-hospital", "hospital-1", T0 + timedelta(days=3))
        _dac_case(conn, "by-team", "msp-now", T0 + timedelta(days=3))
    migrate.upgrade("admissions", engine, schema)
    with engine.connect() as conn:
        consent = conn.execute(text("SELECT opposed_by, opposed_team, lifted_by FROM admissions_consent")).one()
        query = text("SELECT id, referrer_role || ':' || COALESCE(encounter_key, '-') FROM admissions_dac_case")
        cases = {case_id: scope for case_id, scope in conn.execute(query)}
    assert tuple(consent) == ("hospital-1", "msp-old", None)
    assert cases == {"by-hospital": "hospital:enc|2", "by-team": "team:-"}
