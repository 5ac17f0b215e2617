"""The daily (morning) report of one business date: its figures, from the stored rows, pure.

:func:`daily_report` turns the rows :func:`server.storage.daily_reports.daily_rows`
read into the report's map (CBOR- and JSON-friendly: text, integers, lists,
maps; times as epoch seconds). The arithmetic is here, in small functions
with no I/O and no clock (``now`` comes in):

- :func:`refund_reason_of`: the report's reason for a stored refund;
- :func:`ranked`: counts and amounts per key, most money first;
- :func:`zone_occupancy`: a zone's passages replayed in time order: entries,
  exits, the peak inside and the occupancy at the day's end, counted the way
  the live count is (:class:`actors.gates.domain.Occupancy`);
- the hourly buckets and the deposits are the rental report's
  (:func:`server.rental_report.hourly_counts`, :func:`~server.rental_report.deposit_figures`).

docs/reports.md states each figure's definition, with a worked example.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from typing import Any

import attrs

from actors.catalog import Catalog
from actors.gates.domain import Occupancy, counted
from actors.orders.state import RefundReason
from server.rental_report import Window, deposit_figures, hourly_counts, local_day
from server.storage.daily_reports import DailyRows, PassageRow

#: the report's refund reasons, in its order ("other" is shown only when some refund has it)
REFUND_REASONS = ("duplicate_payment", "expiry", "cancelled", "amount_mismatch", "staff")
OTHER = "other"
_REASON_OF = {
    RefundReason.ALREADY_PAID.value: "duplicate_payment",
    RefundReason.ORDER_EXPIRED.value: "expiry",
    RefundReason.ORDER_CANCELLED.value: "cancelled",
    RefundReason.AMOUNT_MISMATCH.value: "amount_mismatch",
}
#: what the report says while no reconciliation run of the date is stored
NO_RUN = "no reconciliation run"


def refund_reason_of(reason: str, staff: bool) -> str:
    """The report's reason for a refund stored with ``reason`` and ``staff``.

    A staff refund (``order.refund`` at a counter) is ``staff`` whatever
    free text its reason holds; the server's own refunds map from their
    stored reason: ``already_paid`` is a ``duplicate_payment``,
    ``order_expired`` an ``expiry``, ``order_cancelled`` ``cancelled``,
    ``amount_mismatch`` itself. Anything else is ``other``.
    """
    if staff:
        return "staff"
    return _REASON_OF.get(reason, OTHER)


def ranked(pairs: Iterable[tuple[str, int]]) -> list[tuple[str, int, int]]:
    """``(key, count, amount_fen)`` per key of ``(key, amount_fen)`` pairs: most fen first.

    Equal amounts are ordered by key, so the order never depends on input order.
    """
    counts: Counter[str] = Counter()
    amounts: Counter[str] = Counter()
    for key, amount in pairs:
        counts[key] += 1
        amounts[key] += amount
    return sorted(((key, counts[key], amounts[key]) for key in counts), key=lambda t: (-t[2], t[0]))


@attrs.frozen
class ZoneDay:
    """One zone's passages over a day: ``peak`` inside first reached at ``peak_at``."""

    entries: int
    exits: int
    peak: int
    peak_at: datetime | None
    final: int


def zone_occupancy(passages: Sequence[tuple[str, datetime]]) -> ZoneDay:
    """Replay a zone's ``(direction, at)`` passages, in the order given (time order).

    The count starts at zero at local midnight and moves as the live count
    does (:func:`actors.gates.domain.counted`): inside is entries less exits,
    never below zero. ``peak`` is the largest inside after any passage (0
    with none) and ``peak_at`` the time of the passage that first reached
    it (``None`` when the peak is 0); ``final`` is inside after the last.
    So ``0 <= final <= peak <= entries``.
    """
    occupancy = Occupancy()
    peak, peak_at = 0, None
    for direction, at in passages:
        occupancy = counted(occupancy, direction)
        if occupancy.inside > peak:
            peak, peak_at = occupancy.inside, at
    return ZoneDay(occupancy.entries, occupancy.exits, peak, peak_at, occupancy.inside)


def daily_report(
    rows: DailyRows, catalog: Catalog, business_date: date, now: datetime
) -> dict[str, Any]:
    """The daily report of ``business_date`` from ``rows``, as of ``now`` (see docs/reports.md)."""
    day = local_day(business_date, catalog.timezone)
    # the rows are read for the day; a passage outside it would make the parts disagree
    passages = [p for p in rows.passages if day.start <= p.at < day.end]
    return {
        "date": business_date.isoformat(),
        "timezone": catalog.timezone,
        "as_of": now.timestamp(),
        "sales": _sales(rows, catalog),
        "refunds": _refunds(rows),
        "gates": _gates(passages, rows, catalog.timezone, day),
        "occupancy": _occupancy(passages),
        "deposits": deposit_figures(rows.holds, rows.rental_entries, rows.receivable_end_fen, day),
        "reconciliation": _reconciliation(rows),
    }


def _sales(rows: DailyRows, catalog: Catalog) -> dict[str, Any]:
    per_product = ranked((t.product_id, t.price_fen) for t in rows.tickets)
    listed = [p.product_id for p in catalog.products]
    order = {product_id: n for n, product_id in enumerate(listed)}
    per_product.sort(key=lambda t: (order.get(t[0], len(order)), t[0]))
    by_product = []
    for product_id, tickets, amount in per_product:
        product = catalog.product(product_id)
        by_product.append(
            {
                "product": product_id,
                "name_en": product.name_en if product else product_id,
                "name_zh": product.name_zh if product else product_id,
                "tickets": tickets,
                "amount_fen": amount,
            }
        )
    return {
        "orders": len(rows.sales),
        "tickets": len(rows.tickets),
        "amount_fen": sum(s.amount_fen for s in rows.sales),
        "by_product": by_product,
        "by_channel": [
            {"channel": key, "orders": n, "amount_fen": fen}
            for key, n, fen in ranked((s.channel, s.amount_fen) for s in rows.sales)
        ],
        "by_device": [
            {"device": key, "orders": n, "amount_fen": fen}
            for key, n, fen in ranked((s.device_id, s.amount_fen) for s in rows.sales)
        ],
    }


def _refunds(rows: DailyRows) -> dict[str, Any]:
    reasons = [(refund_reason_of(r.reason, r.staff), r) for r in rows.refunds]
    shown = REFUND_REASONS + ((OTHER,) if any(k == OTHER for k, _ in reasons) else ())
    by_reason = []
    for kind in shown:
        of_kind = [r for k, r in reasons if k == kind]
        by_reason.append(
            {
                "reason": kind,
                "count": len(of_kind),
                "amount_fen": sum(r.amount_fen for r in of_kind),
                "confirmed_fen": sum(r.amount_fen for r in of_kind if r.confirmed_at is not None),
                "failed_fen": sum(r.amount_fen for r in of_kind if r.failed_at is not None),
            }
        )
    return {
        "count": len(rows.refunds),
        "amount_fen": sum(r.amount_fen for r in rows.refunds),
        "by_reason": by_reason,
    }


def _gates(
    passages: Sequence[PassageRow], rows: DailyRows, timezone: str, day: Window
) -> dict[str, Any]:
    entries = [p for p in passages if p.direction == "entry"]
    exits = [p for p in passages if p.direction == "exit"]
    in_by_hour = hourly_counts((p.at for p in entries), timezone, day)
    out_by_hour = hourly_counts((p.at for p in exits), timezone, day)
    passed: dict[tuple[str, str], Counter[str]] = {}
    for p in passages:
        passed.setdefault((p.gate_id, p.zone), Counter())[p.direction] += 1
    scans = {(g.gate_id, g.zone): g for g in rows.gate_scans}
    by_gate = []
    for gate_id, zone in sorted(set(passed) | set(scans)):
        counts = passed.get((gate_id, zone), Counter())
        scanned = scans.get((gate_id, zone))
        by_gate.append(
            {
                "gate": gate_id,
                "zone": zone,
                "entries": counts["entry"],
                "exits": counts["exit"],
                "scans": scanned.scans if scanned else 0,
                "refused": scanned.refused if scanned else 0,
                "not_passed": scanned.not_passed if scanned else 0,
            }
        )
    return {
        "entries": len(entries),
        "exits": len(exits),
        "by_hour": [
            {"hour": hour, "entries": in_by_hour[hour], "exits": out_by_hour[hour]}
            for hour in range(24)
        ],
        "by_gate": by_gate,
    }


def _occupancy(passages: Sequence[PassageRow]) -> list[dict[str, Any]]:
    by_zone: dict[str, list[tuple[str, datetime]]] = {}
    for p in passages:
        by_zone.setdefault(p.zone, []).append((p.direction, p.at))
    out = []
    for zone in sorted(by_zone):
        figures = zone_occupancy(by_zone[zone])
        out.append(
            {
                "zone": zone,
                "entries": figures.entries,
                "exits": figures.exits,
                "peak": figures.peak,
                "peak_at": figures.peak_at.timestamp() if figures.peak_at else None,
                "final": figures.final,
            }
        )
    return out


def _reconciliation(rows: DailyRows) -> dict[str, Any]:
    if rows.reconciliation is None:
        return {"run": False, "status": NO_RUN}
    return {"run": True, **rows.reconciliation}
