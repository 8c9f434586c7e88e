"""SNP rules: deadlines, placement order, appointment statuses, dashboard math."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.snp.dashboard import Fact, dashboard, percentile
from services.snp.domain import (
    AppointmentStatus,
    SlotCandidate,
    Urgency,
    can_move,
    communes,
    deadline_for,
    haversine_km,
    parse_status,
    placement_order,
)

NOW = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)  # 09:00 in Paris
VITTEL, CONTREX, NEUFCHATEAU, MIRECOURT = "88516", "88114", "88321", "88304"


def slot(slot_id: str, org: str, commune: str, minutes: int) -> SlotCandidate:
    return SlotCandidate(slot_id, org, commune, NOW + timedelta(minutes=minutes))


def order(own, pool, loads=None, commune=CONTREX, deadline=NOW + timedelta(hours=48)):
    ranked = placement_order(
        own, pool, patient_commune=commune, loads=loads or {}, now=NOW, deadline=deadline
    )
    return [p.slot.slot_id for p in ranked]


def test_deadlines_follow_the_urgency():
    assert deadline_for(Urgency.WITHIN_2H, NOW) == NOW + timedelta(hours=2)
    assert deadline_for(Urgency.WITHIN_48H, NOW) == NOW + timedelta(hours=48)
    # same day ends at 23:59:59 in Paris (UTC+1 in November)
    assert deadline_for(Urgency.SAME_DAY, NOW) == datetime(2026, 11, 23, 22, 59, 59, tzinfo=UTC)


def test_a_late_same_day_request_still_gets_two_hours():
    late = datetime(2026, 11, 23, 22, 30, tzinfo=UTC)  # 23:30 in Paris
    assert deadline_for(Urgency.SAME_DAY, late) == late + timedelta(hours=2)


def test_the_own_team_comes_first_even_when_the_pool_has_an_earlier_slot():
    own = [slot("own-late", "msp", VITTEL, 300)]
    pool = [slot("pool-early", "gp", CONTREX, 30)]
    assert order(own, pool) == ["own-late", "pool-early"]


def test_own_team_slots_after_the_deadline_do_not_count():
    own = [slot("own-too-late", "msp", VITTEL, 200)]
    pool = [slot("pool", "gp", CONTREX, 30)]
    assert order(own, pool, deadline=NOW + timedelta(hours=2)) == ["pool"]


def test_the_pool_takes_the_earliest_slot_first():
    pool = [slot("far-early", "a", NEUFCHATEAU, 30), slot("near-late", "b", CONTREX, 60)]
    assert order([], pool) == ["far-early", "near-late"]


def test_at_the_same_time_the_nearest_commune_wins():
    pool = [
        slot("mirecourt", "a", MIRECOURT, 60),
        slot("vittel", "b", VITTEL, 60),
        slot("contrex", "c", CONTREX, 60),
    ]
    assert order([], pool) == ["contrex", "vittel", "mirecourt"]


def test_at_the_same_time_and_place_the_lightest_load_wins():
    pool = [slot("busy", "a", VITTEL, 60), slot("light", "b", VITTEL, 60)]
    assert order([], pool, loads={"a": 3, "b": 1}) == ["light", "busy"]


def test_past_slots_and_slots_beyond_the_deadline_are_never_offered():
    pool = [slot("past", "a", VITTEL, -10), slot("ok", "a", VITTEL, 10), slot("late", "a", VITTEL, 200)]
    assert order([], pool, deadline=NOW + timedelta(hours=2)) == ["ok"]


def test_distances_between_communes_are_great_circle_kilometres():
    table = communes()
    assert haversine_km(table[VITTEL], table[VITTEL]) == 0
    assert 4 < haversine_km(table[VITTEL], table[CONTREX]) < 5
    assert 35 < haversine_km(table[VITTEL], table["88160"]) < 40  # Épinal


@pytest.mark.parametrize(
    ("current", "target", "allowed"),
    [
        ("pending", "booked", True),
        ("pending", "cancelled", True),
        ("pending", "fulfilled", False),
        ("booked", "fulfilled", True),
        ("booked", "noshow", True),
        ("booked", "cancelled", True),
        ("noshow", "booked", False),
        ("cancelled", "booked", False),
    ],
)
def test_appointment_statuses_follow_the_sas_life_cycle(current, target, allowed):
    assert can_move(AppointmentStatus(current), AppointmentStatus(target)) is allowed


def test_a_no_show_cannot_be_told_before_the_appointment():
    start = NOW + timedelta(hours=1)
    assert not can_move(AppointmentStatus.BOOKED, AppointmentStatus.NOSHOW, now=NOW, start=start)
    assert can_move(AppointmentStatus.BOOKED, AppointmentStatus.NOSHOW, now=start, start=start)


def test_sas_capitals_are_accepted_for_statuses():
    assert parse_status("NOSHOW") is AppointmentStatus.NOSHOW
    assert parse_status("no-show") is AppointmentStatus.NOSHOW
    assert parse_status("BOOKED") is AppointmentStatus.BOOKED


def test_percentiles_interpolate_between_ranks():
    assert percentile([], 0.5) is None
    assert percentile([10], 0.9) == 10
    assert percentile([10, 20, 30, 40], 0.5) == 25
    assert percentile([10, 20, 30, 40, 50, 60, 70, 80, 90, 100], 0.9) == pytest.approx(91)


def fact(urgency, commune, minutes_to_appt, *, deadline_h=48, status="booked", org="gp", state=None, hour=8):
    requested = datetime(2026, 11, 23, hour, 0, tzinfo=UTC)
    start = requested + timedelta(minutes=minutes_to_appt) if minutes_to_appt is not None else None
    return Fact(
        urgency=urgency,
        commune=commune,
        requested_at=requested,
        deadline_at=requested + timedelta(hours=deadline_h),
        state=state or ("placed" if start else "expired"),
        appointment_start=start,
        appointment_status=status if start else None,
        effecteur_org_id=org if start else None,
    )


def test_dashboard_figures_match_a_hand_computation():
    facts = [
        fact("2h", VITTEL, 60, deadline_h=2, org="a"),
        fact("2h", VITTEL, 180, deadline_h=2, org="a"),  # placed, but after its deadline
        fact("48h", CONTREX, 600, status="noshow", org="b", hour=13),
        fact("48h", CONTREX, None, hour=13),
        fact("same-day", MIRECOURT, 240, deadline_h=15, org="b", hour=13),
    ]
    board = dashboard(facts, small_cell_threshold=1)  # the arithmetic, without suppression
    assert board["requests"] == 5
    assert board["placed"] == 4
    assert board["placed_within_deadline"] == 3
    assert board["share_placed_within_deadline"] == 0.6
    # minutes: 60, 180, 240, 600 -> median 210, p90 = 240 + 0.7 * 360 = 492
    assert board["time_to_appointment_minutes"] == {"count": 4, "median": 210, "p90": 492}
    assert board["noshows"] == 1
    assert board["unplaced"] == 1 and board["expired"] == 1
    urgency = {row["key"]: row for row in board["by_urgency"]}
    assert urgency["2h"]["requests"] == 2 and urgency["2h"]["placed_within_deadline"] == 1
    assert {row["key"]: row["placed"] for row in board["by_effecteur"]} == {"a": 2, "b": 2}
    hours = {row["hour"]: row["requests"] for row in board["by_hour"]}
    assert hours[9] == 2 and hours[14] == 3  # Paris time
