"""The event catalogue covers every event type, and every intake code maps to one."""

from __future__ import annotations

import pytest

from shared.errors import Unprocessable
from shared.events import (
    CATALOGUE,
    CORRECTIONS,
    DAVINCI_EVENT_SYSTEM,
    INTAKE_CODES,
    RELAIS_EVENT_SYSTEM,
    TOPIC_ADMISSIONS,
    TRE_R254_OID,
    TRE_R254_SYSTEM,
    EventType,
    event_type_for,
    spec,
)
from shared.fhir.models import model_class


def test_every_event_type_has_a_spec_with_a_real_fhir_focus():
    assert set(CATALOGUE) == set(EventType)
    for event_type in EventType:
        event_spec = spec(event_type)
        assert (
            event_spec.type is event_type
            and event_spec.description
            and event_spec.topic.startswith("relais.")
        )
        assert all(model_class(name) is not None for name in event_spec.focus)


def test_spec_accepts_the_string_value():
    assert spec("admission.recorded").topic == TOPIC_ADMISSIONS


@pytest.mark.parametrize(("system", "code"), list(INTAKE_CODES))
def test_every_accepted_intake_code_maps(system, code):
    assert event_type_for(system, code) is INTAKE_CODES[(system, code)]


def test_every_relais_code_maps_back_to_its_event():
    for event_type, event_spec in CATALOGUE.items():
        assert event_type_for(RELAIS_EVENT_SYSTEM, event_spec.code) is event_type


def test_ans_codes_are_case_insensitive_and_accept_the_oid():
    assert event_type_for(TRE_R254_SYSTEM, "sor") is EventType.DISCHARGE_RECORDED
    assert event_type_for(TRE_R254_OID, "ADM") is EventType.ADMISSION_RECORDED


def test_medcom_like_corrections_map_to_corrections_of_the_original():
    assert event_type_for(RELAIS_EVENT_SYSTEM, "cancel-discharge") is EventType.DISCHARGE_CANCELLED
    assert CORRECTIONS[event_type_for(RELAIS_EVENT_SYSTEM, "revise-admit")] is EventType.ADMISSION_RECORDED


def test_davinci_codes_are_case_sensitive():
    with pytest.raises(Unprocessable):
        event_type_for(DAVINCI_EVENT_SYSTEM, "NOTIFICATION-ADMIT")


def test_corrections_point_at_recorded_events():
    assert all(original.value.endswith(".recorded") for original in CORRECTIONS.values())
