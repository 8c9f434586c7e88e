"""The typed bus contracts: one builder applies the detail level, one parser checks what arrives."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from shared.contracts import (
    About,
    CareTeamChanged,
    InvalidContract,
    TerritoryChanged,
    build_notification,
    newer_wins,
    notification_id,
    parse_notification,
    parse_registry_change,
    registry_record,
)
from shared.events import TOPIC_NOTIFY_CPTS, TOPIC_NOTIFY_DAC, TOPIC_NOTIFY_TEAM, EventType, Role
from shared.minimise import MINIMISED_FIELDS, ORGANISATIONAL_FIELDS
from shared.routing import Detail, Recipient

TEAM = Recipient(Role.TEAM, "msp-1", Detail.FULL, TOPIC_NOTIFY_TEAM, "own team")
CPTS = Recipient(Role.CPTS, "cpts-1", Detail.MINIMISED, TOPIC_NOTIFY_CPTS, "no team")
CPTS_POOL = Recipient(Role.CPTS, "cpts-1", Detail.ORGANISATIONAL, TOPIC_NOTIFY_CPTS, "pool")
ABOUT = About(
    patient_key="pk_abc123",
    reference="ref-42",
    subject="NDA-0001-CANARY",
    commune="88100",
    birth_date=date(1950, 3, 1),
)
WHEN = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)


def _bundle(message_id: str) -> dict:
    return {"resourceType": "Bundle", "type": "message", "id": message_id, "entry": [{"note": "CANARY diabète"}]}


def _build(recipient: Recipient, calls: list[str] | None = None):
    def full(message_id: str) -> dict:
        if calls is not None:
            calls.append(message_id)
        return _bundle(message_id)

    return build_notification(
        recipient,
        EventType.ADMISSION_RECORDED,
        source_id="msg-1",
        about=ABOUT,
        sender="750712184",
        occurred_at=WHEN,
        recorded_at=WHEN,
        full=full,
    )


def test_a_full_recipient_gets_the_clinical_bundle_built_with_its_notification_id():
    calls: list[str] = []
    out = _build(TEAM, calls)
    assert calls == [out.message_id]
    assert out.data["payload"]["id"] == out.message_id
    assert out.data["subject"] == "NDA-0001-CANARY"
    assert (out.topic, out.key, out.type) == (TOPIC_NOTIFY_TEAM, "msp-1", "admission.recorded")


def test_a_minimised_recipient_gets_the_whitelist_and_an_opaque_reference_never_the_hospital_subject():
    calls: list[str] = []
    out = _build(CPTS, calls)
    assert calls == []  # the clinical payload is never even assembled for the CPTS
    assert set(out.data["payload"]) <= MINIMISED_FIELDS
    assert out.data["payload"]["age_band"] == "75-84"
    assert out.data["subject"] == "ref-42"
    assert "CANARY" not in str(out.data)


def test_an_organisational_recipient_gets_no_patient_key_at_all():
    out = _build(CPTS_POOL)
    assert set(out.data["payload"]) <= ORGANISATIONAL_FIELDS
    assert out.data["patient_key"] is None
    assert "pk_abc123" not in str(out.data)


def test_notification_ids_are_stable_and_differ_by_recipient_role_and_event():
    one = notification_id("msg-1", TEAM, EventType.ADMISSION_RECORDED)
    assert one == notification_id("msg-1", TEAM, "admission.recorded")
    assert one != notification_id("msg-1", CPTS, EventType.ADMISSION_RECORDED)
    assert one != notification_id("msg-1", TEAM, EventType.DISCHARGE_RECORDED)
    assert one != notification_id("msg-2", TEAM, EventType.ADMISSION_RECORDED)


def test_what_the_builder_makes_the_parser_accepts():
    for recipient in (TEAM, CPTS, CPTS_POOL):
        out = _build(recipient)
        parsed = parse_notification(out.topic, out.data)
        assert parsed.recipient == recipient.organisation_id and parsed.detail is recipient.detail


def test_a_full_notification_on_the_cpts_topic_is_refused():
    data = _build(TEAM).data
    with pytest.raises(InvalidContract, match=r"relais\.notify\.cpts"):
        parse_notification(TOPIC_NOTIFY_CPTS, data)


@pytest.mark.parametrize(
    "change",
    [
        {"v": 99},
        {"role": "sas"},
        {"detail": "everything"},
        {"payload": "not an object"},
        {"recipient": ""},
    ],
)
def test_a_value_that_breaks_the_contract_is_refused_without_echoing_it(change):
    data = {**_build(CPTS).data, **change}
    with pytest.raises(InvalidContract) as caught:
        parse_notification(TOPIC_NOTIFY_DAC, data)
    assert "not an object" not in str(caught.value) and "everything" not in str(caught.value)


def test_a_minimised_payload_with_nested_values_is_refused():
    data = _build(CPTS).data
    data["payload"] = {**data["payload"], "extra": {"nested": "CANARY"}}
    with pytest.raises(InvalidContract, match="flat"):
        parse_notification(TOPIC_NOTIFY_CPTS, data)


def test_registry_changes_round_trip_through_the_outbox_record():
    care = CareTeamChanged(patient_key="pk_1", team_org_id="msp-1", status="active", change="enrolled", at="t")
    topic, key, kind, data = registry_record(care)
    assert (topic, key, kind) == ("relais.careteam", "pk_1", "careteam.changed")
    assert parse_registry_change(kind, data) == care
    territory = TerritoryChanged(postal_code="88100", cpts_org_id="cpts-1")
    assert parse_registry_change(*registry_record(territory)[2:]) == territory
    assert parse_registry_change("something.else", {}) is None
    with pytest.raises(InvalidContract):
        parse_registry_change("careteam.changed", {"status": "active"})


def test_newer_wins_ignores_older_snapshots_and_applies_equal_or_unknown_times():
    assert newer_wins("2026-11-30T08:00:01+00:00", "2026-11-30T08:00:00+00:00")
    assert not newer_wins("2026-11-30T07:59:59+00:00", "2026-11-30T08:00:00+00:00")
    assert newer_wins("2026-11-30T08:00:00+00:00", "2026-11-30T08:00:00+00:00")
    assert newer_wins(None, "2026-11-30T08:00:00+00:00") and newer_wins("2026-11-30T08:00:00+00:00", None)
