"""FHIR shapes of the notifications service: feed Bundle, notification Parameters, Backport Subscriptions."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from services.notifications import fhir
from shared.errors import Unprocessable
from shared.fhir.models import Bundle, Parameters, Subscription
from shared.outbound import OutboundPolicy
from tests.factories import admission_message

NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
TOPIC = "https://relais.example.org/fhir/SubscriptionTopic/discharge"


def notification(
    seq=1, detail="full", payload=None, read_at=None, id_="3f0b9a8e-6a43-5f0e-9d1b-2c9f1a2b3c4d"
):
    return SimpleNamespace(
        id=id_,
        seq=seq,
        event="discharge.recorded",
        role="team",
        detail=detail,
        recipient_org_id="msp-1",
        sender_org_id="chu-1",
        patient_key="pk-1",
        subject="enc-1",
        payload=payload if payload is not None else admission_message(),
        sent_at="2026-11-22T10:00:00+00:00",
        received_at=NOW,
        read_at=read_at,
    )


def test_a_full_notification_is_a_parameters_carrying_the_message_bundle():
    params = Parameters.model_validate(fhir.notification_parameters(notification()))
    by_name = {p.name: p for p in params.parameter}
    assert by_name["payload"].resource.type == "message"
    assert by_name["cursor"].valueString == "1"
    assert by_name["sender"].valueIdentifier.value == "chu-1"
    assert "read" not in by_name


def test_a_minimised_notification_has_one_part_per_field_and_no_bundle():
    n = notification(
        detail="minimised", payload={"event": "discharge.recorded", "commune": "Épinal", "age_band": None}
    )
    params = Parameters.model_validate(fhir.notification_parameters(n))
    payload = next(p for p in params.parameter if p.name == "payload")
    assert payload.resource is None
    assert {part.name: part.valueString for part in payload.part} == {
        "event": "discharge.recorded",
        "commune": "Épinal",
    }


def test_the_feed_is_a_valid_collection_bundle_with_the_next_cursor_in_link_and_tag():
    bundle = fhir.feed_bundle(
        [notification(1), notification(7, id_="b5c2")],
        cursor=7,
        self_url="http://x/feed",
        next_url="http://x/feed?after=7",
    )
    model = Bundle.model_validate(bundle)
    assert model.type == "collection"
    assert [link.url for link in model.link if link.relation == "next"] == ["http://x/feed?after=7"]
    assert model.meta.tag[0].code == "7"
    assert [e.fullUrl for e in model.entry] == [
        "urn:uuid:3f0b9a8e-6a43-5f0e-9d1b-2c9f1a2b3c4d",
        "https://relais.example.org/fhir/Parameters/b5c2",
    ]


def test_receipts_list_who_read_what():
    bundle = Bundle.model_validate(fhir.receipts_bundle([notification(read_at=NOW)], "http://x/receipts"))
    params = {p.name: p for p in bundle.entry[0].resource.parameter}
    assert params["reader"].valueIdentifier.value == "msp-1"
    assert params["read"].valueInstant is not None


def subscription_body(**channel_overrides):
    channel = {
        "type": "rest-hook",
        "endpoint": "https://msp.example.fr/fhir-hook",
        "payload": "application/fhir+json",
        "_payload": {"extension": [{"url": fhir.BACKPORT_CONTENT, "valueCode": "full-resource"}]},
        "extension": [{"url": fhir.BACKPORT_HEARTBEAT, "valueUnsignedInt": 120}],
        "header": ["Authorization: Bearer abc"],
    }
    channel.update(channel_overrides)
    return {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "discharges of my patients",
        "criteria": TOPIC,
        "_criteria": {"extension": [{"url": fhir.BACKPORT_FILTER, "valueString": "Encounter?patient=pk-1"}]},
        "channel": channel,
    }


def test_a_backport_subscription_is_parsed():
    parsed = fhir.parse_subscription(subscription_body(), OutboundPolicy(), 60)
    assert parsed.topic == TOPIC
    assert parsed.filters == [{"patient": "pk-1"}]
    assert parsed.content == "full-resource"
    assert parsed.heartbeat_seconds == 120
    assert parsed.headers == ["Authorization: Bearer abc"]


@pytest.mark.parametrize(
    "change",
    [
        {"criteria": "Encounter?status=finished"},
        {"channel": {"type": "email", "endpoint": "mailto:x@example.org"}},
        {"channel": {"type": "rest-hook", "endpoint": "http://msp.example.fr/hook"}},
        {"resourceType": "Patient"},
        {"end": "not-an-instant"},
    ],
)
def test_an_unsupported_subscription_is_refused(change):
    body = {**subscription_body(), **change}
    with pytest.raises(Unprocessable):
        fhir.parse_subscription(body, OutboundPolicy(), 60)


def sub_row(content="id-only", events=2):
    return SimpleNamespace(
        id="5e1d",
        topic=TOPIC,
        status="active",
        content=content,
        events_since_start=events,
        error=None,
        resource={
            "resourceType": "Subscription",
            "status": "active",
            "reason": "r",
            "criteria": TOPIC,
            "channel": {"type": "rest-hook", "endpoint": "https://x"},
        },
    )


@pytest.mark.parametrize("content", ["empty", "id-only", "full-resource"])
def test_an_event_notification_is_a_history_bundle_led_by_its_subscription_status(content):
    event = fhir.EventView(2, NOW, notification())
    bundle = Bundle.model_validate(fhir.notification_bundle(sub_row(content), "event-notification", [event]))
    assert bundle.type == "history"
    status = bundle.entry[0].resource
    assert status.meta.profile == [fhir.BACKPORT_STATUS_R4]
    params = {p.name: p for p in status.parameter}
    assert params["type"].valueCode == "event-notification"
    assert params["events-since-subscription-start"].valueString == "2"
    parts = {p.name: p for p in params["notification-event"].part}
    assert parts["event-number"].valueString == "2"
    assert ("focus" in parts) == (content != "empty")
    assert len(bundle.entry) == (1 if content == "empty" else 2)
    if content == "full-resource":
        assert bundle.entry[1].resource.id == notification().id
    elif content == "id-only":
        assert bundle.entry[1].resource is None


def test_handshake_and_status_bundles_are_valid():
    handshake = Bundle.model_validate(fhir.notification_bundle(sub_row(events=0), "handshake"))
    assert {p.name: p for p in handshake.entry[0].resource.parameter}["type"].valueCode == "handshake"
    status = Bundle.model_validate(fhir.status_bundle(sub_row()))
    assert status.type == "searchset"


def test_the_stored_subscription_is_returned_with_its_id_status_and_profile():
    resource = Subscription.model_validate(fhir.subscription_resource(sub_row()))
    assert resource.id == "5e1d" and resource.status == "active"
    assert resource.meta.profile == [fhir.BACKPORT_SUBSCRIPTION]
