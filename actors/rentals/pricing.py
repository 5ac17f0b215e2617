"""What a unit's rental costs: usage by its item's pricing rule, late penalties, the due time.

Pure arithmetic in integer fen, on aware datetimes; no clock. The rules,
per unit (its *time out* runs from the rental's pickup to its return):

- per use: the price, whatever the time out;
- per day: the daily price for each rental day (:func:`rental_days`);
- per hour (:func:`hourly_usage_fen`): nothing within the grace period,
  otherwise each started hour, the included ones at the hourly rate and the
  rest at the overtime rate, each started 24 hours capped;
- late: each started hour past the due time at the item's late rate
  (:func:`late_fen`).

A rental is due at the first closing time after its pickup, plus a day for
each rental day after the first (:func:`due_at`).
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from actors.catalog import PerDay, PerHour, PerUse, RentalItem

HOUR = timedelta(hours=1)
#: the period a per-hour rule's daily cap applies to, counted from the pickup
CAP_PERIOD_HOURS = 24


def started(duration: timedelta, unit: timedelta) -> int:
    """How many ``unit`` periods have begun in ``duration``: a part counts whole; none for <= 0."""
    if duration <= timedelta(0):
        return 0
    whole, rest = divmod(duration, unit)
    return whole + (1 if rest else 0)


def hourly_usage_fen(rule: PerHour, out_for: timedelta) -> int:
    """The usage of one unit out for ``out_for`` under a per-hour ``rule``.

    Nothing when ``out_for`` is at most the grace period (a return exactly
    at its end is still free). Otherwise every started hour from the pickup:
    hour ``h`` (1, 2, ...) costs ``hourly_fen`` while ``h <=
    included_hours`` (every hour, without an overtime rate) and
    ``overtime_hourly_fen`` after. The hours are grouped by started 24 hours
    since the pickup (hours 1-24, 25-48, ...), and each group costs at most
    ``daily_cap_fen`` when there is a cap.
    """
    if out_for <= timedelta(minutes=rule.grace_minutes):
        return 0
    hours = started(out_for, HOUR)
    included = hours if rule.included_hours is None else rule.included_hours
    overtime = rule.hourly_fen if rule.overtime_hourly_fen is None else rule.overtime_hourly_fen
    total = 0
    for first in range(0, hours, CAP_PERIOD_HOURS):
        last = min(first + CAP_PERIOD_HOURS, hours)
        at_base = max(0, min(last, included) - first)
        group = at_base * rule.hourly_fen + (last - first - at_base) * overtime
        total += group if rule.daily_cap_fen is None else min(group, rule.daily_cap_fen)
    return total


def usage_fen(item: RentalItem, out_for: timedelta, days: int) -> int:
    """One unit's usage under ``item``'s rule: out for ``out_for``, over ``days`` rental days."""
    pricing = item.pricing
    if isinstance(pricing, PerUse):
        return pricing.price_fen
    if isinstance(pricing, PerDay):
        return pricing.daily_fen * days
    return hourly_usage_fen(pricing, out_for)


def prepaid_unit_fen(item: RentalItem, days: int) -> int:
    """The usage one unit of ``item`` pays in advance for ``days`` rental days (0 if paid later)."""
    if not item.prepaid:
        return 0
    pricing = item.pricing
    if isinstance(pricing, PerUse):
        return pricing.price_fen
    if isinstance(pricing, PerDay):
        return pricing.daily_fen * days
    return 0  # the catalog refuses prepaid per-hour items


def late_fen(item: RentalItem, due: datetime, back_at: datetime) -> int:
    """One unit's late penalty: each started hour from ``due`` to ``back_at`` (none on time)."""
    return item.late_fen_per_hour * started(back_at - due, HOUR)


def due_at(picked_up_at: datetime, days: int, due_back: time, timezone: str) -> datetime:
    """When a rental picked up at ``picked_up_at`` for ``days`` days is due back, aware UTC.

    The first ``due_back`` (site-local closing time) strictly after the
    pickup, then ``days - 1`` local days later: a pickup at 09:00 for one
    day is due at 17:30 the same day; a pickup at 18:00 (after closing) at
    17:30 the next day.
    """
    if days < 1:
        raise ValueError("a rental runs at least one day")
    zone = ZoneInfo(timezone)
    local_day = picked_up_at.astimezone(zone).date()
    if datetime.combine(local_day, due_back, zone) <= picked_up_at:
        local_day += timedelta(days=1)
    last_day = local_day + timedelta(days=days - 1)
    return datetime.combine(last_day, due_back, zone).astimezone(UTC)


def rental_days(days: int, first_due_at: datetime, due: datetime, timezone: str) -> int:
    """The rental days a per-day rule charges: ``days`` booked, plus one per later local date.

    An operator's extension of the due time from ``first_due_at`` to ``due``
    adds one day for each local date it moves the due time on.
    """
    zone = ZoneInfo(timezone)
    extra = (due.astimezone(zone).date() - first_due_at.astimezone(zone).date()).days
    return days + max(0, extra)
