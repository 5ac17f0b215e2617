"""Settlement arithmetic as pure functions: usage, penalties, the due time, the split, the release.

Hypothesis checks the promises over their whole range: nothing released is
negative; charges plus the release equal what was paid plus compensation;
grace periods and caps hold at their edges; a release moves exactly the
voided part, by the route the money took.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.catalog import PerDay, PerHour, PerUse, RentalItem
from actors.rentals.pricing import (
    HOUR,
    due_at,
    hourly_usage_fen,
    late_fen,
    prepaid_unit_fen,
    rental_days,
    started,
    usage_fen,
)
from actors.rentals.settlement import FreshIds, cover, release_of, split, unit_charge
from actors.rentals.state import (
    Condition,
    ConversionRecord,
    DepositRoute,
    Hold,
    Resolution,
    ResolutionKind,
    UnitCharge,
    UnitOnRental,
)

T0 = datetime(2026, 1, 10, 1, 0, tzinfo=UTC)  # 09:00 in Shanghai
SHANGHAI = "Asia/Shanghai"
FRESH = FreshIds("R-1", "P-1", "U-1", "O-1")
MICRO = timedelta(microseconds=1)
BOAT = PerHour(8000, 10, 2, 10000, 36000)

durations = st.integers(0, 200 * 3600 * 10**6).map(lambda us: timedelta(microseconds=us))
rules = st.builds(
    PerHour,
    hourly_fen=st.integers(0, 20000),
    grace_minutes=st.integers(0, 60),
    included_hours=st.none() | st.integers(1, 30),
    overtime_hourly_fen=st.integers(0, 30000),
    daily_cap_fen=st.none() | st.integers(1, 400000),
).map(
    # included_hours and overtime_hourly_fen go together, as the catalog insists
    lambda r: (
        r
        if r.included_hours is not None
        else PerHour(r.hourly_fen, r.grace_minutes, None, None, r.daily_cap_fen)
    )
)


def item(pricing, *, prepaid=None, late=0, damage=0, lost=0, deposit=10000) -> RentalItem:
    if prepaid is None:
        prepaid = not isinstance(pricing, PerHour)
    return RentalItem("x", "x", "x", "main", deposit, pricing, prepaid, late, damage, lost)


# --- started periods, grace, caps ---------------------------------------------


@given(durations)
def test_started_counts_every_begun_hour_and_no_more(duration):
    hours = started(duration, HOUR)
    if duration == timedelta(0):
        assert hours == 0
    else:
        assert (hours - 1) * HOUR < duration <= hours * HOUR


def reference_usage(rule: PerHour, out_for: timedelta) -> int:
    """The per-hour rule written the slow way: hour by hour, a running cap per started day."""
    if out_for <= timedelta(minutes=rule.grace_minutes):
        return 0
    total = day_total = 0
    hour = 0
    while hour * HOUR < out_for:
        hour += 1
        included = rule.included_hours is None or hour <= rule.included_hours
        rate = rule.hourly_fen if included else rule.overtime_hourly_fen
        if (hour - 1) % 24 == 0:
            total += day_total
            day_total = 0
        day_total += rate
        if rule.daily_cap_fen is not None:
            day_total = min(day_total, rule.daily_cap_fen)
    return total + day_total


@given(rules, durations)
def test_the_per_hour_rule_matches_its_hour_by_hour_reading(rule, out_for):
    assert hourly_usage_fen(rule, out_for) == reference_usage(rule, out_for)


@given(rules)
def test_a_return_exactly_at_the_end_of_the_grace_period_is_free_and_just_after_is_not(rule):
    grace = timedelta(minutes=rule.grace_minutes)
    assert hourly_usage_fen(rule, grace) == 0
    hours = started(grace + MICRO, HOUR)  # every started hour counts from the pickup
    assert hourly_usage_fen(rule, grace + MICRO) == reference_usage(rule, hours * HOUR)
    if rule.hourly_fen:
        assert hourly_usage_fen(rule, grace + MICRO) > 0


@given(rules, durations, durations)
def test_more_time_out_never_costs_less(rule, a, b):
    short, long = sorted((a, b))
    assert 0 <= hourly_usage_fen(rule, short) <= hourly_usage_fen(rule, long)


@given(rules, durations)
def test_each_started_day_costs_at_most_the_cap_and_the_rates_below_it(rule, out_for):
    used = hourly_usage_fen(rule, out_for)
    hours = started(out_for, HOUR)
    days = started(out_for, timedelta(hours=24))
    if rule.daily_cap_fen is not None:
        assert used <= days * rule.daily_cap_fen
    included = hours if rule.included_hours is None else min(hours, rule.included_hours)
    overtime = rule.hourly_fen if rule.overtime_hourly_fen is None else rule.overtime_hourly_fen
    uncapped = included * rule.hourly_fen + (hours - included) * overtime
    if out_for <= timedelta(minutes=rule.grace_minutes):
        assert used == 0
    else:
        assert used <= uncapped
        if rule.daily_cap_fen is None:
            assert used == uncapped


def test_the_cap_is_reached_exactly_and_then_holds_for_the_rest_of_the_day():
    # 2 x 8000 + 2 x 10000 = 36000: four hours cost exactly the cap
    assert hourly_usage_fen(BOAT, 3 * HOUR) == 26000
    assert hourly_usage_fen(BOAT, 4 * HOUR) == 36000
    assert hourly_usage_fen(BOAT, 4 * HOUR + MICRO) == 36000
    assert hourly_usage_fen(BOAT, 24 * HOUR) == 36000
    # the 25th hour starts a new capped day, at the overtime rate (the tier counts from pickup)
    assert hourly_usage_fen(BOAT, 24 * HOUR + MICRO) == 46000
    assert hourly_usage_fen(BOAT, 48 * HOUR) == 72000


def test_an_hour_exactly_is_one_hour_and_a_moment_more_is_two():
    assert hourly_usage_fen(BOAT, HOUR) == 8000
    assert hourly_usage_fen(BOAT, HOUR + MICRO) == 16000
    assert hourly_usage_fen(BOAT, 2 * HOUR + MICRO) == 26000


def test_without_overtime_every_hour_is_at_the_hourly_rate():
    rule = PerHour(3000)
    assert hourly_usage_fen(rule, timedelta(0)) == 0
    assert hourly_usage_fen(rule, MICRO) == 3000
    assert hourly_usage_fen(rule, 30 * HOUR) == 90000


def test_per_use_and_per_day_usage_and_what_is_prepaid():
    per_use, per_day, per_hour = item(PerUse(3000)), item(PerDay(12000)), item(BOAT)
    assert usage_fen(per_use, 50 * HOUR, 1) == 3000
    assert usage_fen(per_day, MICRO, 3) == 36000
    assert usage_fen(per_hour, 150 * timedelta(minutes=1), 9) == 26000
    assert prepaid_unit_fen(per_use, 5) == 3000
    assert prepaid_unit_fen(per_day, 2) == 24000
    assert prepaid_unit_fen(per_hour, 1) == 0
    assert prepaid_unit_fen(item(PerDay(12000), prepaid=False), 2) == 0


# --- the due time and lateness ---------------------------------------------------


@pytest.mark.parametrize(
    ("local_pickup", "days", "local_due"),
    [
        ("2026-01-10 09:00", 1, "2026-01-10 17:30"),
        ("2026-01-10 17:29", 1, "2026-01-10 17:30"),
        ("2026-01-10 17:30", 1, "2026-01-11 17:30"),  # at closing: due at the next one
        ("2026-01-10 18:00", 1, "2026-01-11 17:30"),
        ("2026-01-10 09:00", 3, "2026-01-12 17:30"),
        ("2026-01-10 00:10", 2, "2026-01-11 17:30"),
    ],
)
def test_a_rental_is_due_at_the_first_closing_after_pickup_plus_its_extra_days(
    local_pickup, days, local_due
):
    zone = ZoneInfo(SHANGHAI)
    pickup = datetime.fromisoformat(local_pickup).replace(tzinfo=zone)
    due = due_at(pickup.astimezone(UTC), days, time(17, 30), SHANGHAI)
    assert due.tzinfo is UTC
    assert due.astimezone(zone).replace(tzinfo=None) == datetime.fromisoformat(local_due)


@given(st.integers(0, 10**7), st.integers(1, 7))
def test_the_due_time_is_after_the_pickup_at_closing_within_its_days(seconds, days):
    pickup = T0 + timedelta(seconds=seconds)
    due = due_at(pickup, days, time(17, 30), SHANGHAI)
    assert pickup < due <= pickup + timedelta(days=days)
    assert due.astimezone(ZoneInfo(SHANGHAI)).time() == time(17, 30)


def test_lateness_counts_started_hours_past_the_due_time():
    skis = item(PerDay(12000), late=3000)
    due = T0 + 8 * HOUR
    assert late_fen(skis, due, due - HOUR) == 0
    assert late_fen(skis, due, due) == 0
    assert late_fen(skis, due, due + MICRO) == 3000
    assert late_fen(skis, due, due + HOUR) == 3000
    assert late_fen(skis, due, due + HOUR + MICRO) == 6000


def test_an_extension_to_a_later_date_adds_rental_days():
    first = due_at(T0, 2, time(17, 30), SHANGHAI)
    assert rental_days(2, first, first, SHANGHAI) == 2
    assert rental_days(2, first, first + 3 * HOUR, SHANGHAI) == 2  # later the same evening
    assert rental_days(2, first, first + 24 * HOUR, SHANGHAI) == 3
    assert rental_days(2, first, first + 7 * HOUR, SHANGHAI) == 3  # past local midnight


# --- one unit's charge, and the bundle's cover --------------------------------


def _back(condition, at):
    return UnitOnRental("U1", "L1", "x", at, condition)


def test_a_unit_is_charged_its_usage_and_penalties_lost_instead_of_damaged():
    boat = item(BOAT, late=5000, damage=50000, lost=800000)
    due = T0 + 2 * HOUR
    ok = unit_charge(boat, _back(Condition.OK, T0 + 3 * HOUR), T0, due, 1)
    assert (ok.usage_fen, ok.late_fen, ok.damage_fen, ok.lost_fen) == (26000, 5000, 0, 0)
    damaged = unit_charge(boat, _back(Condition.DAMAGED, T0 + HOUR), T0, due, 1)
    assert damaged.total_fen == 8000 + 50000
    lost = unit_charge(boat, _back(Condition.LOST, T0 + HOUR), T0, due, 1)
    assert lost.total_fen == 8000 + 800000 and lost.damage_fen == 0
    with pytest.raises(ValueError, match="not back"):
        unit_charge(boat, UnitOnRental("U1", "L1", "x"), T0, due, 1)


def test_a_bundle_covers_the_dearest_usage_of_its_items_and_never_a_penalty():
    charges = [
        UnitCharge("B1", "boat", 8000, False, 0, 0, 0),
        UnitCharge("B2", "boat", 26000, False, 5000, 0, 0),
        UnitCharge("J1", "jacket", 0, False, 0, 0, 15000),
    ]
    covered = cover(charges, {"boat": 1, "jacket": 1})
    assert [c.covered for c in covered] == [False, True, True]
    assert [c.total_fen for c in covered] == [8000, 5000, 15000]
    assert cover(charges, {}) == tuple(charges)


# --- the split ----------------------------------------------------------------------


@given(st.integers(0, 10**9), st.integers(0, 10**9))
def test_the_split_never_refunds_a_negative_amount_and_balances(paid, charges):
    how = split(paid, charges)
    assert how.released_fen >= 0 and how.compensation_fen >= 0
    assert how.kept_fen == min(paid, charges) <= paid
    assert how.charges_fen + how.released_fen == how.paid_fen + how.compensation_fen
    assert how.kept_fen + how.released_fen == paid
    assert how.kept_fen + how.compensation_fen == charges
    assert how.released_fen == 0 or how.compensation_fen == 0


def test_the_split_at_its_edges():
    assert split(60000, 0).released_fen == 60000
    assert (split(60000, 60000).released_fen, split(60000, 60000).compensation_fen) == (0, 0)
    assert split(60000, 60001).compensation_fen == 1
    with pytest.raises(ValueError):
        split(-1, 0)


# --- the release, by route ----------------------------------------------------------


def _pay_hold():
    return Hold(
        DepositRoute.PAY, "wechat", 50000, 10000, T0, out_trade_no="P-0", channel_txn_id="W"
    )


def _preauth_hold(**changes):
    hold = Hold(
        DepositRoute.PREAUTH,
        "alipay",
        50000,
        10000,
        T0,
        out_order_no="A-0",
        auth_no="AUTH",
        expires_at=T0 + 72 * HOUR,
    )
    return attrs.evolve(hold, **changes)


@given(st.integers(0, 60000))
def test_the_pay_route_refunds_exactly_the_voided_part(posted):
    release = release_of(_pay_hold(), posted, FRESH)
    assert release.refund_fen == 60000 - posted
    assert (release.refund_no is None) == (posted == 60000)
    assert release.convert_trade_no is None and release.unfreeze_request_no is None


@given(st.integers(0, 60000))
def test_a_freeze_converts_the_posted_part_and_unfreezes_the_rest(posted):
    release = release_of(_preauth_hold(), posted, FRESH)
    assert release.refund_no is None
    assert release.convert_fen + release.unfreeze_rest_fen + release.unfreeze_fen == 60000
    assert release.convert_fen == posted
    assert (release.convert_trade_no is None) == (posted == 0)
    assert (release.unfreeze_request_no is None) == (posted != 0)


def test_a_freeze_converted_whole_releases_by_refund_deferred_until_confirmed():
    converting = ConversionRecord("P-W", 60000, 0, True, T0)
    release = release_of(_preauth_hold(conversion=converting), 20000, FRESH)
    assert (release.refund_fen, release.refund_deferred) == (40000, True)
    confirmed = attrs.evolve(converting, confirmed=True)
    release = release_of(_preauth_hold(conversion=confirmed), 20000, FRESH)
    assert (release.refund_fen, release.refund_deferred) == (40000, False)


def test_a_lapsed_freeze_has_nothing_to_release_and_nothing_can_be_posted():
    lapsed = _preauth_hold(resolution=Resolution(ResolutionKind.LAPSED, 0, 60000, T0))
    assert lapsed.secured_fen == 0
    assert release_of(lapsed, 0, FRESH).refund_no is None
    with pytest.raises(ValueError):
        release_of(lapsed, 1, FRESH)
    with pytest.raises(ValueError):
        release_of(_pay_hold(), 60001, FRESH)
