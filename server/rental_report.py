"""The rental report of one business date: its figures, from the stored rows, pure.

:func:`rental_report` turns the rows :func:`server.storage.rental_reports.report_rows`
read into the report's map (CBOR- and JSON-friendly: text, integers,
floats, lists, maps; times as epoch seconds). The arithmetic is here, in
small functions with no I/O and no clock (``now`` comes in):

- :func:`local_day`: the UTC bounds of the site's local date;
- :func:`opening_hours`: the window the utilization counts, from the
  catalog: from the earliest time slot's start (midnight when the catalog
  has no slots) to the rentals' ``due_back``;
- :func:`hourly_counts`: moments counted per local hour (0..23);
- :func:`seconds_out`: a set of units' time out within a window, each unit
  counted once however its spans overlap;
- :func:`utilization`: time out over time open, within ``[0, 1]``;
- :func:`who_rents`: rentals per bundle ticket product, counts only;
- :func:`deposit_figures`: the day's deposits (the daily report shows them too).

docs/reports.md states each figure's definition, with a worked example.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import attrs

from actors.catalog import Catalog
from actors.rentals.postings import DEPOSITS_HELD, PREPAID, RECEIVABLE, REVENUE
from server.storage.rental_reports import EntryRow, HoldRow, ReportRows, UnitSpan

#: the label of rentals that name no bundle ticket
NO_TICKET = "no ticket named"
#: rental statuses, in the order of a rental's life
STATUSES = ("pending", "held", "out", "settled", "cancelled", "expired", "forfeited")
#: how a hold is resolved, in the report's order
RESOLUTIONS = ("settled", "cancelled", "forfeited", "lapsed")
REFUNDS_PAYABLE = "refunds:payable"
CLEARING = "clearing:"


@attrs.frozen
class Window:
    """A span of time ``[start, end)``, aware UTC."""

    start: datetime
    end: datetime

    @property
    def seconds(self) -> int:
        """Its length in whole seconds (0 when it is empty)."""
        return max(0, int((self.end - self.start).total_seconds()))


def local_day(business_date: date, timezone: str) -> Window:
    """The UTC bounds of ``business_date`` in ``timezone``: local midnight to the next one."""
    zone = ZoneInfo(timezone)
    start = datetime.combine(business_date, time(0), zone)
    end = datetime.combine(business_date + timedelta(days=1), time(0), zone)
    return Window(start.astimezone(ZoneInfo("UTC")), end.astimezone(ZoneInfo("UTC")))


def opening_hours(catalog: Catalog, business_date: date) -> Window | None:
    """The hours the rental desks count as open on ``business_date``, or ``None``.

    The catalog has no opening time of its own, so the site opens at the
    start of its earliest time slot (local midnight when it lists no slots)
    and closes at the rentals' ``due_back`` time. ``None`` when the site
    rents nothing (no ``[rentals]`` terms) or the window would be empty.
    """
    terms = catalog.rental_terms
    if terms is None:
        return None
    zone = ZoneInfo(catalog.timezone)
    opens = min((slot.starts for slot in catalog.slots), default=time(0))
    window = Window(
        datetime.combine(business_date, opens, zone).astimezone(ZoneInfo("UTC")),
        datetime.combine(business_date, terms.due_back, zone).astimezone(ZoneInfo("UTC")),
    )
    return window if window.seconds > 0 else None


def hourly_counts(moments: Iterable[datetime], timezone: str, day: Window) -> tuple[int, ...]:
    """How many of ``moments`` within ``day`` fall in each local hour 0..23 of ``timezone``.

    Moments outside ``day`` are not counted, so the 24 counts sum to the
    number of moments within it. On a day whose clocks go back, both
    passes of the repeated hour count in that hour.
    """
    zone = ZoneInfo(timezone)
    counts = [0] * 24
    for moment in moments:
        if day.start <= moment < day.end:
            counts[moment.astimezone(zone).hour] += 1
    return tuple(counts)


def _clip(start: datetime, end: datetime, window: Window) -> tuple[datetime, datetime] | None:
    start, end = max(start, window.start), min(end, window.end)
    return (start, end) if start < end else None


def seconds_out(spans: Iterable[UnitSpan], window: Window, now: datetime) -> int:
    """The unit-seconds ``spans`` are out within ``window``, each unit counted once at a time.

    A span still out (``back_at`` ``None``) counts until ``now``. Spans of
    one unit that overlap count once (the store never lets that happen; the
    arithmetic does not rely on it), so the result is at most the number of
    distinct units times the window's length.
    """
    by_unit: dict[str, list[tuple[datetime, datetime]]] = {}
    for span in spans:
        clipped = _clip(span.out_at, span.back_at or now, window)
        if clipped is not None:
            by_unit.setdefault(span.unit_id, []).append(clipped)
    total = timedelta()
    for pieces in by_unit.values():
        pieces.sort()
        start, end = pieces[0]
        for piece_start, piece_end in pieces[1:]:
            if piece_start > end:
                total += end - start
                start, end = piece_start, piece_end
            else:
                end = max(end, piece_end)
        total += end - start
    return int(total.total_seconds())


def utilization(unit_seconds_out: int, units: int, window_seconds: int) -> float | None:
    """Unit-seconds out over unit-seconds open (``units`` times the window), or ``None``.

    ``None`` when nothing was open (no units, or an empty window). Raises
    ``ValueError`` when the time out exceeds the time open or a figure is
    negative: then the inputs do not describe one window.
    """
    if min(unit_seconds_out, units, window_seconds) < 0:
        raise ValueError("time and unit counts are never negative")
    open_seconds = units * window_seconds
    if open_seconds == 0:
        return None
    if unit_seconds_out > open_seconds:
        raise ValueError(f"{unit_seconds_out} unit-seconds out of {open_seconds} open")
    return unit_seconds_out / open_seconds


def who_rents(products: Iterable[str | None]) -> list[tuple[str | None, int]]:
    """Rentals per bundle ticket product (``None``: no ticket named), most first, then by name."""
    counts = Counter(products)
    return sorted(counts.items(), key=lambda pair: (-pair[1], pair[0] is None, pair[0] or ""))


def rental_report(
    rows: ReportRows, catalog: Catalog, business_date: date, now: datetime
) -> dict[str, Any]:
    """The report of ``business_date`` from ``rows``, as of ``now`` (see docs/reports.md)."""
    day = local_day(business_date, catalog.timezone)
    names = {item.item_id: (item.name_en, item.name_zh) for item in catalog.rental_items}
    return {
        "date": business_date.isoformat(),
        "timezone": catalog.timezone,
        "as_of": now.timestamp(),
        "rentals": _rentals(rows),
        "items": _items(rows, names),
        "charges": _charges(rows, names),
        "money": _money(rows),
        "give_backs": _give_backs(rows),
        "deposits": _deposits(rows, day),
        "hours": _hours(rows.spans, catalog.timezone, day),
        **_utilization(rows, catalog, business_date, now, names),
        "who_rents": _who_rents(rows, catalog),
    }


def _name(names: Mapping[str, tuple[str, str]], item_id: str) -> dict[str, str]:
    name_en, name_zh = names.get(item_id, (item_id, item_id))
    return {"name_en": name_en, "name_zh": name_zh}


def _rentals(rows: ReportRows) -> dict[str, Any]:
    statuses = Counter(rental.status for rental in rows.rentals)
    return {
        "made": len(rows.rentals),
        "held": sum(rental.held for rental in rows.rentals),
        "by_status": {status: statuses.get(status, 0) for status in STATUSES},
    }


def _item_order(item_ids: Iterable[str], names: Mapping[str, Any]) -> list[str]:
    """The catalog's items in its order, then any others by id."""
    seen = set(item_ids)
    listed = [item for item in names if item in seen]
    return listed + sorted(seen - set(listed))


def _items(rows: ReportRows, names: Mapping[str, tuple[str, str]]) -> list[dict[str, Any]]:
    rentals: Counter[str] = Counter()
    booked: Counter[str] = Counter()
    out: Counter[str] = Counter()
    for rental in rows.rentals:
        for item_id in {line.item_id for line in rental.lines}:
            rentals[item_id] += 1
        for line in rental.lines:
            booked[line.item_id] += line.quantity
        out.update(rental.units_out)
    return [
        {
            "item": item_id,
            **_name(names, item_id),
            "rentals": rentals[item_id],
            "units_booked": booked[item_id],
            "units_out": out[item_id],
        }
        for item_id in _item_order(booked, names)
    ]


def _charges(rows: ReportRows, names: Mapping[str, tuple[str, str]]) -> list[dict[str, Any]]:
    out = []
    for item_id in _item_order((c.item_id for c in rows.charges), names):
        charges = [c for c in rows.charges if c.item_id == item_id]
        usage = sum(c.usage_fen for c in charges if not c.covered)
        covered = sum(c.usage_fen for c in charges if c.covered)
        late = sum(c.late_fen for c in charges)
        damage = sum(c.damage_fen for c in charges)
        lost = sum(c.lost_fen for c in charges)
        out.append(
            {
                "item": item_id,
                **_name(names, item_id),
                "units": len(charges),
                "usage_fen": usage,
                "covered_usage_fen": covered,
                "late_fen": late,
                "damage_fen": damage,
                "lost_fen": lost,
                "total_fen": usage + late + damage + lost,
            }
        )
    return out


def _money(rows: ReportRows) -> dict[str, Any]:
    entries = {entry.account: entry for entry in rows.entries}

    def debit(account: str) -> int:
        return entries[account].debit_fen if account in entries else 0

    def credit(account: str) -> int:
        return entries[account].credit_fen if account in entries else 0

    channels = [
        {
            "channel": account.removeprefix(CLEARING),
            "collected_fen": debit(account),
            "refunded_fen": credit(account),
            "net_fen": debit(account) - credit(account),
        }
        for account in sorted(entries)
        if account.startswith(CLEARING)
    ]
    return {
        "channels": channels,
        "collected_fen": sum(c["collected_fen"] for c in channels),
        "refunded_fen": sum(c["refunded_fen"] for c in channels),
        "net_fen": sum(c["net_fen"] for c in channels),
        "revenue_fen": credit(REVENUE) - debit(REVENUE),
        "deposits_in_fen": credit(DEPOSITS_HELD),
        "deposits_out_fen": debit(DEPOSITS_HELD),
        "prepaid_in_fen": credit(PREPAID),
        "prepaid_out_fen": debit(PREPAID),
        "refunds_owed_fen": credit(REFUNDS_PAYABLE),
        "refunds_paid_fen": debit(REFUNDS_PAYABLE),
    }


def _give_backs(rows: ReportRows) -> list[dict[str, Any]]:
    return [
        {
            "kind": row.kind,
            "reference": row.reference,
            "rental": row.rental_id,
            "channel": row.channel,
            "amount_fen": row.amount_fen,
            "reason": row.reason,
            "requested_at": row.requested_at.timestamp(),
            "state": "confirmed"
            if row.confirmed_at is not None
            else ("failed" if row.failure else "pending"),
        }
        for row in rows.give_backs
    ]


def _deposits(rows: ReportRows, day: Window) -> dict[str, Any]:
    return deposit_figures(rows.holds, rows.entries, rows.receivable_end_fen, day)


def deposit_figures(
    holds: Sequence[HoldRow], entries: Sequence[EntryRow], receivable_end_fen: int, day: Window
) -> dict[str, Any]:
    """The deposits of ``day``: held, resolved, released, kept, forfeited, outstanding, owed.

    ``holds`` are those :func:`~server.storage.rental_reports.holds_touching`
    reads, ``entries`` the rentals' ledger lines within the day and
    ``receivable_end_fen`` the receivable's balance at its end; the rental
    report and the daily report both show this map (docs/reports.md).
    """
    made = [h for h in holds if day.start <= h.held_at < day.end]
    resolved = [
        h for h in holds if h.resolved_at is not None and day.start <= h.resolved_at < day.end
    ]
    outstanding = [h for h in holds if h.resolved_at is None or h.resolved_at >= day.end]
    by_kind = [
        {
            "resolution": kind,
            "count": len(of_kind),
            "posted_fen": sum(h.posted_fen or 0 for h in of_kind),
            "voided_fen": sum(h.voided_fen or 0 for h in of_kind),
        }
        for kind in RESOLUTIONS
        if (of_kind := [h for h in resolved if h.resolution == kind])
    ]
    by_account = {entry.account: entry for entry in entries}
    receivable = by_account.get(RECEIVABLE)
    return {
        "held": {"count": len(made), "amount_fen": sum(h.amount_fen for h in made)},
        "resolved": by_kind,
        "released_fen": sum(h.voided_fen or 0 for h in resolved),
        "kept_fen": sum(h.posted_fen or 0 for h in resolved if h.resolution == "settled"),
        "forfeited_fen": sum(h.posted_fen or 0 for h in resolved if h.resolution == "forfeited"),
        "outstanding": {
            "count": len(outstanding),
            "amount_fen": sum(h.amount_fen for h in outstanding),
        },
        "receivable_posted_fen": receivable.debit_fen if receivable else 0,
        "receivable_balance_fen": receivable_end_fen,
    }


def _hours(spans: Sequence[UnitSpan], timezone: str, day: Window) -> list[dict[str, int]]:
    pickups = hourly_counts((s.out_at for s in spans), timezone, day)
    returns = hourly_counts((s.back_at for s in spans if s.back_at is not None), timezone, day)
    return [
        {"hour": hour, "pickups": pickups[hour], "returns": returns[hour]} for hour in range(24)
    ]


def _utilization(
    rows: ReportRows,
    catalog: Catalog,
    business_date: date,
    now: datetime,
    names: Mapping[str, tuple[str, str]],
) -> dict[str, Any]:
    window = opening_hours(catalog, business_date)
    if window is None:
        return {"opening": None, "utilization": []}
    per_item = []
    item_ids = set(rows.units) | {span.item_id for span in rows.spans} | set(names)
    for item_id in _item_order(item_ids, names):
        spans = [span for span in rows.spans if span.item_id == item_id]
        units = set(rows.units.get(item_id, ())) | {span.unit_id for span in spans}
        out = seconds_out(spans, window, now)
        per_item.append(
            {
                "item": item_id,
                **_name(names, item_id),
                "units": len(units),
                "unit_seconds_out": out,
                "unit_seconds_open": len(units) * window.seconds,
                "utilization": utilization(out, len(units), window.seconds),
            }
        )
    return {
        "opening": {
            "opens": window.start.timestamp(),
            "closes": window.end.timestamp(),
            "seconds": window.seconds,
        },
        "utilization": per_item,
    }


def _who_rents(rows: ReportRows, catalog: Catalog) -> list[dict[str, Any]]:
    out = []
    for product_id, count in who_rents(r.bundle_product for r in rows.rentals if r.held):
        product = catalog.product(product_id) if product_id is not None else None
        out.append(
            {
                "ticket": product_id,
                "name_en": product.name_en if product else (product_id or NO_TICKET),
                "name_zh": product.name_zh if product else (product_id or "未出示门票"),
                "rentals": count,
            }
        )
    return out
