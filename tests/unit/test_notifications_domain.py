"""Rules of the notifications service: notify contract, topics, filters, signatures, backoff, cursors."""

from __future__ import annotations

import time

import pytest

from services.notifications import domain
from services.notifications.domain import InvalidNotification, Notification, parse_notification
from shared.errors import BadRequest, Unprocessable
from shared.outbound import OutboundPolicy, parse_networks

MESSAGE = {"resourceType": "Bundle", "type": "message", "entry": []}


def data(**overrides):
    base = {
        "recipient": "msp-1",
        "role": "team",
        "detail": "full",
        "event": "discharge.recorded",
        "patient_key": "pk-1",
        "sender": "chu-1",
        "subject": "enc-1",
        "payload": MESSAGE,
    }
    return {**base, **overrides}


def note(**overrides) -> Notification:
    return parse_notification("relais.notify.team", "n-1", "2026-11-22T10:00:00+00:00", data(**overrides))


def test_a_notification_following_the_contract_is_accepted():
    n = note()
    assert (n.id, n.recipient, n.role, n.detail, n.event, n.sender) == (
        "n-1",
        "msp-1",
        "team",
        "full",
        "discharge.recorded",
        "chu-1",
    )


@pytest.mark.parametrize(
    "overrides",
    [
        {"recipient": None},
        {"event": ""},
        {"role": "sas"},
        {"detail": "everything"},
        {"payload": "text"},
        {"detail": "full", "payload": {"resourceType": "Patient"}},
        {"detail": "minimised", "payload": {"event": "x", "diagnosis": {"code": "C50"}}},
        {"sender": 12},
    ],
)
def test_a_notification_breaking_the_contract_is_refused(overrides):
    with pytest.raises(InvalidNotification):
        note(**overrides)


def test_a_full_clinical_notification_for_the_cpts_is_refused():
    with pytest.raises(InvalidNotification, match="CPTS"):
        parse_notification("relais.notify.cpts", "n-1", "", data(role="cpts", detail="full"))


def test_a_minimised_notification_for_the_cpts_is_accepted():
    n = parse_notification(
        "relais.notify.cpts",
        "n-1",
        "",
        data(role="cpts", detail="minimised", payload={"event": "admission.recorded", "commune": "88160"}),
    )
    assert n.payload == {"event": "admission.recorded", "commune": "88160"}


def test_an_envelope_id_that_is_not_a_fhir_id_is_refused():
    with pytest.raises(InvalidNotification):
        parse_notification("relais.notify.team", "id with spaces", "", data())


@pytest.mark.parametrize(
    ("event", "topic"),
    [
        ("admission.recorded", "admission"),
        ("admission.cancelled", "admission"),
        ("discharge.recorded", "discharge"),
        ("followup.missed", "discharge"),
        ("handoff.declined", "handoff"),
        ("snp.requested", "snp"),
        ("careteam.changed", None),
    ],
)
def test_each_event_belongs_to_its_subscription_topic(event, topic):
    expected = domain.SUBSCRIPTION_TOPICS[topic] if topic else None
    assert domain.topic_of_event(event) == expected


def test_filters_are_parsed_with_or_without_a_resource_type():
    assert domain.parse_filter("Encounter?event=discharge.recorded&patient=pk-1") == {
        "event": "discharge.recorded",
        "patient": "pk-1",
    }
    assert domain.parse_filter("patient=pk-2") == {"patient": "pk-2"}


@pytest.mark.parametrize("criteria", ["Encounter?diagnosis=C50", "Encounter?patient=", "Encounter?"])
def test_unsupported_or_empty_filters_are_refused(criteria):
    with pytest.raises(Unprocessable):
        domain.parse_filter(criteria)


def test_a_notification_matches_its_topic_and_any_one_of_the_filters():
    discharge = domain.SUBSCRIPTION_TOPICS["discharge"]
    n = note()
    assert domain.matches(discharge, [], n)
    assert not domain.matches(domain.SUBSCRIPTION_TOPICS["admission"], [], n)
    assert domain.matches(
        discharge, [{"patient": "other"}, {"patient": "pk-1", "event": "discharge.recorded"}], n
    )
    assert not domain.matches(discharge, [{"patient": "pk-1", "event": "discharge.cancelled"}], n)


def test_a_signature_verifies_with_the_same_secret_body_and_a_fresh_timestamp():
    body = b'{"resourceType":"Bundle"}'
    now = int(time.time())
    header = domain.signature_header("s3cret-s3cret-s3cret", now, body)
    assert header.startswith(f"t={now},v1=")
    assert domain.verify_signature("s3cret-s3cret-s3cret", header, body, now=now)


def test_a_signature_fails_for_another_body_secret_or_an_old_timestamp():
    body = b"{}"
    now = 1_800_000_000
    header = domain.signature_header("secret-secret-secret", now, body)
    assert not domain.verify_signature("secret-secret-secret", header, b"{ }", now=now)
    assert not domain.verify_signature("another-secret-value", header, body, now=now)
    assert not domain.verify_signature("secret-secret-secret", header, body, now=now + 301)
    assert not domain.verify_signature("secret-secret-secret", "v1=abc", body, now=now)


def test_the_signature_is_hmac_sha256_of_timestamp_dot_body():
    import hashlib
    import hmac

    expected = hmac.new(b"k" * 16, b"1700000000.hello", hashlib.sha256).hexdigest()
    assert domain.signature("k" * 16, 1_700_000_000, b"hello") == expected


def test_backoff_doubles_from_the_base_up_to_the_cap():
    delays = [domain.backoff_delay(n, base=2.0, cap=60.0, rand=lambda: 0.5) for n in range(1, 9)]
    assert delays == [2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0]


def test_backoff_jitter_stays_within_twenty_percent():
    assert domain.backoff_delay(3, 1.0, 100.0, rand=lambda: 0.0) == pytest.approx(3.2)
    assert domain.backoff_delay(3, 1.0, 100.0, rand=lambda: 1.0) == pytest.approx(4.8)
    assert domain.backoff_delay(10_000, 1.0, 100.0) <= 120.0


def test_a_delivery_is_dead_after_the_maximum_number_of_attempts():
    assert not domain.is_dead(7, 8)
    assert domain.is_dead(8, 8)


def test_the_cursor_is_a_decimal_sequence_number():
    assert domain.parse_cursor(None) == 0
    assert domain.parse_cursor("") == 0
    assert domain.parse_cursor("42") == 42
    for bad in ("-1", "abc", "1e3", "9" * 30):
        with pytest.raises(BadRequest):
            domain.parse_cursor(bad)


def test_the_page_limit_is_clamped():
    assert domain.page_limit(None, 50, 200) == 50
    assert domain.page_limit(1000, 50, 200) == 200
    with pytest.raises(BadRequest):
        domain.page_limit(0, 50, 200)


LOOPBACK = OutboundPolicy(allowed_networks=parse_networks(["127.0.0.0/8"]), allow_http=True)


@pytest.mark.parametrize(
    ("url", "policy", "ok"),
    [
        ("https://msp.example.fr/hook", OutboundPolicy(), True),
        ("http://127.0.0.1:8080/hook", LOOPBACK, True),
        ("http://127.0.0.1:8080/hook", OutboundPolicy(), False),
        ("https://127.0.0.1:8080/hook", OutboundPolicy(), False),
        ("https://localhost/hook", LOOPBACK, False),
        ("https://169.254.169.254/latest", LOOPBACK, False),
        ("http://msp.example.fr/hook", OutboundPolicy(), False),
        ("ftp://msp.example.fr/hook", LOOPBACK, False),
        ("https://user:pw@msp.example.fr/hook", OutboundPolicy(), False),
        ("not a url", OutboundPolicy(), False),
    ],
)
def test_endpoints_follow_the_outbound_policy(url, policy, ok):
    if ok:
        assert domain.check_endpoint_url(url, policy) == url
    else:
        with pytest.raises(Unprocessable):
            domain.check_endpoint_url(url, policy)


def _attempt_after(ok: bool, attempts: int, subscription_status: str | None) -> domain.AfterAttempt:
    attempt = domain.Attempt(ok, 200 if ok else 503, None if ok else "HTTP 503")
    return domain.after_attempt(
        attempt,
        attempts,
        "heartbeat",
        subscription_status,
        max_attempts=3,
        backoff_base=1.0,
        backoff_cap=10.0,
        rand=lambda: 0.5,
    )


def test_a_successful_attempt_delivers_and_activates_a_requested_or_failing_subscription():
    assert _attempt_after(True, 1, "requested") == domain.AfterAttempt("delivered", None, "active", None)
    assert _attempt_after(True, 2, "error").subscription_status == "active"
    assert _attempt_after(True, 1, "active").subscription_status is None
    assert _attempt_after(True, 1, None).subscription_status is None


def test_a_failed_attempt_retries_after_a_backoff_until_the_last_one_which_is_dead():
    assert _attempt_after(False, 2, "active") == domain.AfterAttempt("retry", 2.0, None, None)
    dead = _attempt_after(False, 3, "active")
    assert (dead.outcome, dead.subscription_status) == ("dead", "error")
    assert dead.subscription_error == "heartbeat delivery failed 3 times: HTTP 503"
    assert _attempt_after(False, 3, "off") == domain.AfterAttempt("dead", None, None, None)
    assert _attempt_after(False, 3, None).subscription_status is None


def _claimed(notification_id: str | None = "n-1") -> domain.Claimed:
    return domain.Claimed(1, "d-1", "webhook", "w-1", "notification", notification_id, "https://x/hook", "{}", 0)


def test_a_webhook_delivery_is_signed_with_the_webhooks_secret():
    now = int(time.time())
    headers = domain.delivery_headers(_claimed(), domain.Target("s" * 20, ()), b"{}", now)
    assert headers["Relais-Delivery-Id"] == "d-1"
    assert headers["Relais-Notification-Id"] == "n-1"
    assert domain.verify_signature("s" * 20, headers[domain.SIGNATURE_HEADER], b"{}", now=now)


def test_a_subscription_delivery_carries_its_channel_headers_and_no_signature():
    target = domain.Target(None, ("Authorization: Bearer abc", "X-Extra:1"))
    headers = domain.delivery_headers(_claimed(None), target, b"{}", 0)
    assert domain.channel_headers(target) == {"Authorization": "Bearer abc", "X-Extra": "1"}
    assert domain.SIGNATURE_HEADER not in headers
    assert "Relais-Notification-Id" not in headers
