"""What leaves the care team: whitelisted, short, and free of anything clinical or identifying."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from shared.events import EventType, Role
from shared.minimise import (
    FOLLOWUP_SYSTEM,
    MINIMISED_FIELDS,
    SNOMED_CT,
    NotMinimised,
    age_band,
    assert_minimised,
    followup_code,
    minimise,
    shape_for,
)
from shared.routing import Detail, Recipient

OCCURRED = datetime(2025, 3, 14, 9, 30, tzinfo=UTC)
RECORDED = datetime(2025, 3, 14, 9, 31, 5, tzinfo=UTC)
SECRETS = [
    "Tumeur maligne du sein",  # diagnosis text
    "C50.9",  # CIM-10 code
    "DUPONT",  # family name
    "Marie-Claire",  # given name
    "284076322009245",  # NIR
    "Patiente anxieuse, vit seule au 3e sans ascenseur, fille à Lyon",  # free-text note
]


def full_payload() -> dict:
    return {
        "resourceType": "Bundle",
        "patient": {
            "name": [{"family": "DUPONT", "given": ["Marie-Claire"]}],
            "identifier": [{"system": "urn:oid:1.2.250.1.213.1.4.8", "value": "284076322009245"}],
            "birthDate": "1940-07-22",
        },
        "condition": {
            "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "C50.9"}]},
            "text": "Tumeur maligne du sein",
        },
        "note": "Patiente anxieuse, vit seule au 3e sans ascenseur, fille à Lyon",
    }


def minimal_of(payload: dict) -> dict:
    return minimise(
        payload,
        event_type=EventType.DISCHARGE_RECORDED,
        patient_key="pk-7f3a9c",
        commune="75120",
        birth_date=date(1940, 7, 22),
        occurred_at=OCCURRED,
        recorded_at=RECORDED,
    )


def test_cpts_payload_carries_no_diagnosis_no_free_text_no_name_no_ins():
    text = json.dumps(minimal_of(full_payload()), ensure_ascii=False)
    for secret in SECRETS:
        assert secret not in text


def test_minimised_payload_has_exactly_the_whitelisted_fields():
    minimal = minimal_of(full_payload())
    assert set(minimal) == MINIMISED_FIELDS
    assert minimal == {
        "event": "discharge.recorded",
        "patient_key": "pk-7f3a9c",
        "commune": "75120",
        "age_band": "75-84",
        "occurred_at": "2025-03-14T09:30:00+00:00",
        "recorded_at": "2025-03-14T09:31:05+00:00",
    }


def test_minimised_payload_is_the_same_whatever_the_full_payload():
    assert minimal_of(full_payload()) == minimal_of({})


@pytest.mark.parametrize(
    ("birth", "on", "band"),
    [
        (date(2025, 3, 14), date(2025, 3, 14), "0-17"),
        (date(2007, 3, 15), date(2025, 3, 14), "0-17"),  # 18 tomorrow
        (date(2007, 3, 14), date(2025, 3, 14), "18-39"),  # 18 today
        (date(1985, 3, 15), date(2025, 3, 14), "18-39"),
        (date(1985, 3, 14), date(2025, 3, 14), "40-59"),
        (date(1965, 3, 15), date(2025, 3, 14), "40-59"),
        (date(1965, 3, 14), date(2025, 3, 14), "60-74"),
        (date(1950, 3, 15), date(2025, 3, 14), "60-74"),
        (date(1950, 3, 14), date(2025, 3, 14), "75-84"),
        (date(1940, 3, 15), date(2025, 3, 14), "75-84"),
        (date(1940, 3, 14), date(2025, 3, 14), "85+"),
        (date(1920, 1, 1), date(2025, 3, 14), "85+"),
        (date(2000, 2, 29), date(2018, 2, 28), "0-17"),  # leap-day birthday counts from 1 March
        (date(2000, 2, 29), date(2018, 3, 1), "18-39"),
    ],
)
def test_age_band_boundaries(birth, on, band):
    assert age_band(birth, on) == band


def test_age_band_refuses_a_birth_in_the_future():
    with pytest.raises(ValueError):
        age_band(date(2030, 1, 1), date(2025, 1, 1))


def test_unknown_birth_date_gives_no_age_band():
    minimal = minimise(
        {},
        event_type="admission.recorded",
        patient_key="pk-1",
        commune=None,
        birth_date=None,
        occurred_at="2025-03-14T09:30:00+01:00",
        recorded_at="2025-03-14T09:30:02+01:00",
    )
    assert minimal["age_band"] is None and minimal["commune"] is None


def test_shape_follows_the_recipient_detail():
    full = full_payload()
    minimal = minimal_of(full)

    def recipient(role: Role, detail: Detail) -> Recipient:
        return Recipient(role, "org", detail, "relais.notify.x", "rule")

    assert shape_for(recipient(Role.TEAM, Detail.FULL), full, minimal) == full
    assert shape_for(recipient(Role.CPTS, Detail.MINIMISED), full, minimal) == minimal
    counts = shape_for(recipient(Role.CPTS, Detail.ORGANISATIONAL), full, minimal)
    assert counts == {
        "event": "discharge.recorded",
        "commune": "75120",
        "occurred_at": minimal["occurred_at"],
        "recorded_at": minimal["recorded_at"],
    }
    assert shape_for(Detail.ORGANISATIONAL, full, minimal) == counts


def test_shape_refuses_a_minimised_payload_that_is_not():
    with pytest.raises(NotMinimised):
        shape_for(Detail.MINIMISED, {}, full_payload())


@pytest.mark.parametrize(
    "payload",
    [
        {"event": "admission.recorded", "diagnosis": "C50.9"},
        {"event": "admission.recorded", "commune": "Patiente anxieuse, vit seule au 3e sans ascenseur"},
        {"event": "admission.recorded", "commune": "x" * 65},
        {"event": "admission.recorded", "commune": "ligne 1\nligne 2"},
        {"event": "admission.recorded", "commune": {"text": "nested"}},
        {"event": "admission.recorded", "age_band": 82},
        {"event": "admission.recorded", "age_band": "82"},
        {"event": "whatever"},
        {"patient_key": "284076322009245"},
        {"patient_key": "2 84 07 63 220 092 45"},
        {"patient_key": "Marie DUPONT"},
    ],
)
def test_assert_minimised_catches_leaks(payload):
    with pytest.raises(NotMinimised):
        assert_minimised(payload)


def test_assert_minimised_accepts_commune_codes_only():
    assert_minimised({"commune": "88516"})
    assert_minimised({"commune": "2A004"})  # Corsica
    for name in ("Saint-Rémy-de-Provence", "Le Puy-en-Velay", "885160"):
        with pytest.raises(NotMinimised):
            assert_minimised({"commune": name})


# Strings too short would match inside the fixed fields by chance (e.g. "0" in a timestamp).
secret_text = st.text(min_size=4, max_size=80)


@given(
    name=secret_text,
    diagnosis=secret_text,
    note=secret_text,
    nir=st.from_regex(r"[12]\d{14}", fullmatch=True),
)
def test_no_string_of_the_full_payload_reaches_the_minimised_one(name, diagnosis, note, nir):
    baseline = json.dumps(minimal_of({}), ensure_ascii=False)
    secrets = [name, diagnosis, note, nir]
    for secret in secrets:
        assume(secret not in baseline)
    full = {
        "patient": {"name": name, "identifier": nir},
        "condition": {"code": {"text": diagnosis}},
        "note": note,
        "extra": {name: [diagnosis, note]},
    }
    text = json.dumps(minimal_of(full), ensure_ascii=False)
    for secret in secrets:
        assert secret not in text


# --- Relais' follow-up value set (issue 19, item 9) ----------------------------------------------------------


@pytest.mark.parametrize(
    ("system", "code", "expected"),
    [
        (FOLLOWUP_SYSTEM, "gp-visit", "gp-visit"),
        (FOLLOWUP_SYSTEM, "DUPONT-Jean-1950-VIH", "followup"),  # not in the value set, even under Relais' system
        ("urn:oid:1.2.250.1.999.7.1", "gp-visit", "followup"),  # Relais' code under the hospital's system
        (SNOMED_CT, "18949003", "nurse-visit"),  # change of dressing, a published code the value set maps
        (SNOMED_CT, "22298006", "followup"),  # a SNOMED CT code outside the map
        (None, None, "followup"),
    ],
)
def test_only_the_follow_up_value_set_leaves_the_care_team(system, code, expected):
    assert followup_code(system, code) == expected
